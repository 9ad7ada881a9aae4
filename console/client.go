package console

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Client is a connection to a cfkd management socket. It sends one line at
// a time and reads the answer up to its final OK or ERROR line.
type Client struct {
	conn net.Conn
	r    *bufio.Reader
}

// ServerError is an `ERROR: ...` answer from cfkd; its message is the text
// after "ERROR: ".
type ServerError struct{ Msg string }

func (e *ServerError) Error() string { return e.Msg }

// Dial connects to the management socket at addr (see ParseAddress).
func Dial(addr string, timeout time.Duration) (*Client, error) {
	a, err := ParseAddress(addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout(a.Network, a.Addr, timeout)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}, nil
}

// Do sends one line and returns the body lines of the answer. An ERROR
// answer is returned as a *ServerError.
func (c *Client) Do(line string) ([]string, error) {
	if strings.ContainsAny(line, "\r\n") {
		return nil, fmt.Errorf("a request is one line")
	}
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		return nil, err
	}
	var body []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l == "" {
				return body, fmt.Errorf("connection closed before the answer ended: %w", err)
			}
			return body, err
		}
		// Body lines end in "\n" and the final line in "\r\n", so a
		// body line that reads "OK" (a service named OK) is not the end.
		final := strings.HasSuffix(l, "\r\n")
		l = strings.TrimRight(l, "\r\n")
		switch {
		case !final:
		case l == "OK":
			return body, nil
		case strings.HasPrefix(l, "ERROR: "):
			return body, &ServerError{Msg: strings.TrimPrefix(l, "ERROR: ")}
		case l == "ERROR:":
			return body, &ServerError{}
		}
		body = append(body, l)
	}
}

// Auth gives the server its token (`auth TOKEN`), which a TCP console
// with a token wants before anything else.
func (c *Client) Auth(token string) error {
	if strings.ContainsAny(token, " \t\r\n") || token == "" {
		return errors.New("a token is one word")
	}
	_, err := c.Do("auth " + token)
	return err
}

// Close says `exit` and closes the connection.
func (c *Client) Close() error {
	_, _ = c.conn.Write([]byte("exit\r\n"))
	return c.conn.Close()
}
