package bench

import (
	"os"
	"syscall"
)

// dataSync flushes f as the store's SQLite commits do on Linux:
// fdatasync(2) (store/driver.go).
func dataSync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
