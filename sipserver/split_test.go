package sipserver

import (
	"strings"
	"testing"
)

func TestSplitList(t *testing.T) {
	got := splitList(`<sip:a.example;lr>, "x,y" <sip:b;lr;p="1,2">,<sip:c>`)
	if len(got) != 3 || got[1] != `"x,y" <sip:b;lr;p="1,2">` {
		t.Fatalf("%q", got)
	}
}

// FuzzSplitList: the Path/Route list splitter (outside data) never panics
// and never invents characters.
func FuzzSplitList(f *testing.F) {
	f.Add(`<sip:a;lr>, <sip:b;lr>`)
	f.Add(`"<,>" <sip:x>, ,`)
	f.Fuzz(func(t *testing.T, s string) {
		for _, part := range splitList(s) {
			if !strings.Contains(s, part) {
				t.Fatalf("%q not in %q", part, s)
			}
		}
	})
}
