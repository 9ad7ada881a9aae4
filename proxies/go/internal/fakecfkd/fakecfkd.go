// Package fakecfkd is internal/fakecfkd under the path benchmem imports it
// by. The fake cfkd moved there so that the Perl and Python proxies' tests
// share it; new code imports github.com/controlfreak-go/cfk/internal/fakecfkd,
// and this package goes once benchmem does too.
package fakecfkd

import "github.com/controlfreak-go/cfk/internal/fakecfkd"

type (
	// Status is fakecfkd.Status.
	Status = fakecfkd.Status
	// Socket is fakecfkd.Socket.
	Socket = fakecfkd.Socket
	// Options is fakecfkd.Options.
	Options = fakecfkd.Options
	// Proxy is fakecfkd.Proxy.
	Proxy = fakecfkd.Proxy
)

// Start is fakecfkd.Start.
func Start(opt Options) (*Proxy, error) { return fakecfkd.Start(opt) }

// Listen is fakecfkd.Listen.
func Listen(name string) (*Socket, error) { return fakecfkd.Listen(name) }
