package console

// Kind says what a line of the language is: a declaration of an attribute
// of a service, socket or proxy, or a command.
type Kind int

// The kinds of lines, named after their first word.
const (
	// KindService is `service NAME ATTR=VALUE`.
	KindService Kind = iota + 1
	// KindSocket is `socket NAME ATTR=VALUE`.
	KindSocket
	// KindProxy is `proxy NAME ATTR=VALUE`.
	KindProxy
	// KindProxyService is `proxy NAME service SVC ATTR=VALUE`: it sets SVC's
	// attribute and puts SVC under proxy NAME.
	KindProxyService
	// KindCommand is `command VERB [ARGS...]`.
	KindCommand
)

// String returns the first word of lines of this kind.
func (k Kind) String() string {
	switch k {
	case KindService:
		return "service"
	case KindSocket:
		return "socket"
	case KindProxy, KindProxyService:
		return "proxy"
	case KindCommand:
		return "command"
	}
	return "unknown"
}

// Request is one parsed line of the language. The console never acts on
// it: a Handler (the supervisor) does.
type Request struct {
	Kind Kind

	// Name is the service, socket or proxy the line declares. For
	// KindProxyService it is the proxy's name.
	Name string
	// Service is the service's name for KindProxyService.
	Service string

	// Attr and Value are the attribute and its value for declarations.
	// Value has its leading spaces dropped and surrounding quotes removed;
	// an empty Value means "unset the attribute".
	Attr  string
	Value string

	// Verb and Args are the command word and its arguments for KindCommand.
	Verb string
	Args []string
}

// Unset reports whether a declaration clears its attribute (an empty value).
func (r Request) Unset() bool { return r.Value == "" }

// Handler carries out requests. Execute returns the body lines of the
// answer, or an error whose message is sent as `ERROR: <message>`.
// It is called from many connections at once and must be safe for that.
type Handler interface {
	Execute(Request) ([]string, error)
}

// HandlerFunc lets a plain function serve as a Handler.
type HandlerFunc func(Request) ([]string, error)

// Execute calls f.
func (f HandlerFunc) Execute(r Request) ([]string, error) { return f(r) }
