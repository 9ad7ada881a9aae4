package cfkproxy

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// memfdName is what the shared memory is called in /proc/PID/maps and
// /proc/PID/fd ("/memfd:cfkproxy (deleted)").
const memfdName = "cfkproxy"

// preloadBufferBytes is the buffer between Preload and the memfd, so that
// a Preload writing small records does not make one write(2) per record.
const preloadBufferBytes = 1 << 20

// requiredSeals make the memfd immutable for as long as it exists: it can
// neither shrink (a mapping past the end would SIGBUS a worker), grow, be
// written, nor have its seals changed. A worker refuses shared memory that
// lacks any of them.
const requiredSeals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL

// buildShared runs preload into a fresh memfd and seals it. The memfd is
// close-on-exec in the proxy; spawn places it explicitly in each worker.
// Preload writes with write(2), never through a mapping, because
// F_SEAL_WRITE cannot be set while a writable shared mapping exists.
func buildShared(preload func(io.Writer) error) (f *os.File, size int64, err error) {
	fd, err := unix.MemfdCreate(memfdName, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, 0, fmt.Errorf("memfd_create: %w", err)
	}
	f = os.NewFile(uintptr(fd), "memfd:"+memfdName)
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if preload != nil {
		w := bufio.NewWriterSize(f, preloadBufferBytes)
		if err := preload(w); err != nil {
			return nil, 0, fmt.Errorf("preload: %w", err)
		}
		if err := w.Flush(); err != nil {
			return nil, 0, fmt.Errorf("preload: %w", err)
		}
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, requiredSeals); err != nil {
		return nil, 0, fmt.Errorf("seal memfd: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("stat memfd: %w", err)
	}
	return f, st.Size(), nil
}

// mapShared maps the sealed memfd at fd read-only and shared, after
// checking the seals, and closes fd: the mapping keeps the memory alive,
// and nothing the worker runs later can inherit the fd. An empty memfd
// gives a nil slice (mmap refuses length 0).
func mapShared(fd int) ([]byte, error) {
	defer unix.Close(fd)
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("shared memory fd %d: %w", fd, err)
	}
	if seals&requiredSeals != requiredSeals {
		return nil, fmt.Errorf("shared memory fd %d is not sealed (seals %#x, want %#x)", fd, seals, requiredSeals)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("shared memory fd %d: %w", fd, err)
	}
	if st.Size == 0 {
		return nil, nil
	}
	if int64(int(st.Size)) != st.Size {
		return nil, fmt.Errorf("shared memory of %d bytes does not fit in memory", st.Size)
	}
	b, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap shared memory (%d bytes): %w", st.Size, err)
	}
	return b, nil
}
