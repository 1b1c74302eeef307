package paidcall_test

import (
	"os"
	"os/exec"
	"testing"
)

// TestBuildsForWebAssembly: the paid call and what it stands on compile
// for the browser (GOOS=js GOARCH=wasm), so the browser's build can use
// the same code as the Go agents. (The SQLite driver is left out there:
// store/driver.go.)
func TestBuildsForWebAssembly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds for js/wasm: skipped with -short")
	}
	cmd := exec.Command("go", "build", "-o", os.DevNull, "../paidcall", "../sipext", "../agent", "../channel", "../paywire", "../wallet", "../meter", "../sipua")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=js GOARCH=wasm go build: %v\n%s", err, out)
	}
}
