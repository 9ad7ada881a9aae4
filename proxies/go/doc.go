// Package cfkproxy implements ControlFreak's proxy protocol for Go.
package cfkproxy
