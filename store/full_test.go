package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestDiskFull runs a payee's store in a child process whose files may not
// grow past a limit (RLIMIT_FSIZE: writes fail as on a full disk). Writes
// then fail with a clear error, and every write that succeeded before is
// intact afterwards: nothing acknowledged is lost. Opening a new store
// there fails cleanly too.
func TestDiskFull(t *testing.T) {
	if os.Getenv("PAYSIP_DISKFULL_CHILD") != "" {
		diskFullChild()
		return
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "paysip.db")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r := record(t, Payee, 1)
	if err := d.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	d.Close()
	fi, _ := os.Stat(path)

	cmd := exec.Command(os.Args[0], "-test.run=^TestDiskFull$")
	cmd.Env = append(os.Environ(), "PAYSIP_DISKFULL_CHILD="+path, "PAYSIP_DISKFULL_ID="+r.ID(),
		"PAYSIP_DISKFULL_LIMIT="+strconv.FormatInt(fi.Size()+64*1024, 10))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var lastOK int64
	var storeErr, openErr string
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "LAST_OK "); ok {
			lastOK, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "STORE_ERR "); ok {
			storeErr = v
		}
		if v, ok := strings.CutPrefix(line, "OPEN_ERR "); ok {
			openErr = v
		}
	}
	if lastOK == 0 || storeErr == "" {
		t.Fatalf("the child never hit the limit:\n%s", out)
	}
	if !strings.Contains(storeErr, "disk full") || !strings.Contains(storeErr, "true") {
		t.Errorf("store error does not say the disk is full: %s", storeErr)
	}
	if openErr == "" {
		t.Errorf("a new store opened on a full disk")
	}
	d, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var check string
	d.db.QueryRow("PRAGMA integrity_check").Scan(&check)
	got, err := d.Get(ctx, r.ID())
	if err != nil || check != "ok" {
		t.Fatalf("after a full disk: %v, integrity %s", err, check)
	}
	if got.BestSat < lastOK {
		t.Fatalf("stored best %d, but %d was acknowledged", got.BestSat, lastOK)
	}
	t.Logf("%d payments stored before the disk filled; error: %s", lastOK, storeErr)
}

func diskFullChild() {
	path := os.Getenv("PAYSIP_DISKFULL_CHILD")
	limit, _ := strconv.ParseUint(os.Getenv("PAYSIP_DISKFULL_LIMIT"), 10, 64)
	signal.Ignore(syscall.SIGXFSZ) // the write fails with EFBIG instead of killing us
	d, err := Open(path)
	if err != nil {
		fmt.Println("SETUP_ERR", err)
		return
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		fmt.Println("SETUP_ERR", err)
		return
	}
	id := os.Getenv("PAYSIP_DISKFULL_ID")
	sig := make([]byte, 72)
	for v := int64(1); v < 1_000_000; v++ {
		big := append(sig, make([]byte, 512)...) // grow the WAL quickly
		if err := d.PayeePayment(context.Background(), id, v, big); err != nil {
			fmt.Println("STORE_ERR", err, errors.Is(err, ErrNotStored))
			break
		}
		fmt.Println("LAST_OK", v)
	}
	d.Close()
	syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: 0, Max: 0}) // now truly full
	if _, err := Open(filepath.Join(filepath.Dir(path), "new.db")); err != nil {
		fmt.Println("OPEN_ERR", err)
	}
}
