package bench

import (
	"os"
	"slices"
	"time"
)

// diskFlush measures what one durable commit costs the disk under the
// bench's directory, apart from any database: a 4 KiB page written over a
// preallocated file and flushed with fsync (the call SQLite makes for
// each commit in WAL mode with synchronous=FULL), one every 5 ms, as the
// payments of a few calls arrive. A payment's ack waits for one such
// flush, so its percentiles are the floor under the round trip's.
func diskFlush(dir string, samples int) (p50, p99 float64, err error) {
	f, err := os.CreateTemp(dir, "flush-*")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	const page, pages = 4096, 256
	if err := f.Truncate(page * pages); err != nil {
		return 0, 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, 0, err
	}
	buf := make([]byte, page)
	ms := make([]float64, 0, samples)
	for i := 0; i < samples; i++ {
		time.Sleep(5 * time.Millisecond)
		buf[0] = byte(i)
		start := time.Now()
		if _, err := f.WriteAt(buf, int64(i%pages)*page); err != nil {
			return 0, 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, 0, err
		}
		ms = append(ms, float64(time.Since(start))/float64(time.Millisecond))
	}
	slices.Sort(ms)
	return percentile(ms, 50), percentile(ms, 99), nil
}

// diskDir is where the payee's store lives in the bench.
func (r *run) diskDir() string { return r.dir }
