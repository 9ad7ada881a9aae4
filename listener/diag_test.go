package listener

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// With nobody accepting, K connections sit in the accept queue; the limit
// is the backlog; once accepted, the queue is empty.
func TestQueue(t *testing.T) {
	const backlog, k = 8, 5
	cases := []struct {
		name string
		spec Spec
		v6   bool
	}{
		{"tcp4", Spec{Host: "127.0.0.1", Service: "0", ListenQSize: backlog}, false},
		{"tcp6", Spec{Host: "::1", Service: "0", ListenQSize: backlog}, true},
		{"unix", Spec{Host: "unix/", Service: "q.sock", ListenQSize: backlog}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.v6 {
				needIPv6(t)
			}
			if tc.spec.Host == "unix/" {
				tc.spec.Service = filepath.Join(shortTempDir(t), tc.spec.Service)
			}
			s := mustBind(t, tc.spec)
			q, err := s.Queue()
			if err != nil {
				t.Fatalf("Queue: %v", err)
			}
			if q != (QueueStat{Queued: 0, Limit: backlog}) {
				t.Errorf("idle: %+v, want 0 queued, limit %d", q, backlog)
			}
			for range k {
				dial(t, s)
			}
			waitFor(t, 5*time.Second, "5 connections in the accept queue", func() bool {
				q, err = s.Queue()
				if err != nil {
					t.Fatalf("Queue: %v", err)
				}
				return q.Queued == k
			})
			if q.Limit != backlog {
				t.Errorf("limit %d, want the backlog %d", q.Limit, backlog)
			}
			for range k {
				// The fd is blocking, but five connections are waiting.
				nfd, _, err := unix.Accept4(s.Fd(), unix.SOCK_CLOEXEC)
				if err != nil {
					t.Fatalf("accept: %v", err)
				}
				unix.Close(nfd)
			}
			waitFor(t, 5*time.Second, "an empty accept queue", func() bool {
				q, err = s.Queue()
				if err != nil {
					t.Fatalf("Queue: %v", err)
				}
				return q.Queued == 0
			})
		})
	}
}

// Two sockets on one port (v4 and v6) are told apart by inode.
func TestQueueFindsItsOwnSocket(t *testing.T) {
	needIPv6(t)
	s6 := mustBind(t, Spec{Host: "::", Service: "0", ListenQSize: 3})
	s4 := mustBind(t, Spec{Host: "0.0.0.0", Service: "0", ListenQSize: 7})
	if q, err := s6.Queue(); err != nil || q.Limit != 3 {
		t.Errorf("v6: %+v, %v", q, err)
	}
	if q, err := s4.Queue(); err != nil || q.Limit != 7 {
		t.Errorf("v4: %+v, %v", q, err)
	}
}

func TestQueueAfterClose(t *testing.T) {
	s, err := Bind(Spec{Service: "0"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = s.Queue()
	if err == nil || !strings.HasPrefix(err.Error(), "cannot read the accept queue of "+s.Addr()+": ") {
		t.Errorf("Queue after Close: %v", err)
	}
}
