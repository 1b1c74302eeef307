package pgtest

import (
	"database/sql"
	"os"
	"testing"
)

// TestServer: a server of its own starts, serves two separate databases
// that are dropped with their test, and is gone, directory and all, once
// stopped.
func TestServer(t *testing.T) {
	var s *Server
	t.Run("server", func(t *testing.T) {
		s = New(t)
		var names []string
		for i := 0; i < 2; i++ {
			url := s.NewDatabase(t)
			db, err := sql.Open("pgx", url)
			if err != nil {
				t.Fatal(err)
			}
			var name, fsync string
			if err := db.QueryRow("SELECT current_database(), current_setting('fsync')").Scan(&name, &fsync); err != nil {
				t.Fatal(err)
			}
			db.Close()
			if fsync != "on" {
				t.Errorf("fsync %s", fsync)
			}
			names = append(names, name)
		}
		if names[0] == names[1] {
			t.Fatalf("one database twice: %v", names)
		}
	})
	if s == nil {
		return // skipped
	}
	select {
	case <-s.exited:
	default:
		t.Fatal("server still running after its test")
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Fatalf("directory %s left: %v", s.Dir, err)
	}
}
