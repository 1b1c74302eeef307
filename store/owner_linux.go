package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"

	"golang.org/x/sys/unix"
)

// fileOwner is an SQLite store handle's identity among the processes
// sharing the file (a payee and 'paysip channels settle' on one data
// directory): a write lock on one byte, at offset id, of the file
// <database>-owners, held as an open file description lock (Linux
// F_OFD_SETLK) for as long as the handle is open. The kernel drops it when
// the handle closes the file or its process dies; unlike a POSIX record
// lock it is not shared by two handles of one process, and closing another
// descriptor of the file does not drop it.
type fileOwner struct {
	f  *os.File
	id int64
}

func newFileOwner(path string) (owner, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store owner file: %w", err)
	}
	for range 100 {
		id := int64(rand.Int32N(1<<31-1) + 1)
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: id, Len: 1}
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
		if err == nil {
			return &fileOwner{f: f, id: id}, nil
		}
		if err != unix.EAGAIN && err != unix.EACCES {
			f.Close()
			if err == unix.EINVAL { // a kernel without OFD locks: no owners
				return nil, nil
			}
			return nil, fmt.Errorf("store owner lock: %w", err)
		}
	}
	f.Close()
	return nil, fmt.Errorf("store owner lock: no free id in %s", path)
}

func (o *fileOwner) ID() int64 { return o.id }

// Alive asks the kernel whether someone holds byte id of the owners file.
func (o *fileOwner) Alive(_ *txn, id int64) (bool, error) {
	if id == o.id {
		return true, nil
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: id, Len: 1}
	if err := unix.FcntlFlock(o.f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false, err
	}
	return lk.Type != unix.F_UNLCK, nil
}

func (o *fileOwner) ensure(context.Context) error { return nil }

func (o *fileOwner) release() { o.f.Close() }
