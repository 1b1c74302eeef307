package sipserver

import (
	"strings"
	"testing"
)

// FuzzDirectorySubscribeHeaders: the Event and Expires of a SUBSCRIBE to
// the live directory come from anyone; reading them never panics, a
// package is taken only when named alone (no id), and an accepted length
// is 0 or within the bounds.
func FuzzDirectorySubscribeHeaders(f *testing.F) {
	for _, s := range [][2]string{{"paysip-directory", "600"}, {"Paysip-Directory ; x=1", "0"}, {"paysip-directory;id=3", "59"},
		{"presence", "99999999999"}, {"", "-1"}, {strings.Repeat("a", 300), " 61 "}} {
		f.Add(s[0], s[1], true)
	}
	f.Fuzz(func(t *testing.T, event, expires string, present bool) {
		if name, ok := parseEvent(event); ok {
			if name == "" || strings.ContainsAny(name, " \t,\"") || name != strings.ToLower(name) {
				t.Fatalf("event %q read as %q", event, name)
			}
			if strings.Contains(strings.ToLower(event), "id=") && strings.Contains(event, ";") {
				for _, p := range strings.Split(event, ";")[1:] {
					if k, _, _ := strings.Cut(strings.TrimSpace(p), "="); strings.EqualFold(strings.TrimSpace(k), "id") {
						t.Fatalf("event with an id taken: %q", event)
					}
				}
			}
		}
		secs, brief, ok := parseExpires(expires, present)
		if ok && !brief && secs != 0 && (secs < DirectoryMinExpires || secs > DirectoryMaxExpires) {
			t.Fatalf("Expires %q gave %d", expires, secs)
		}
		if !present && (!ok || secs != DirectoryDefaultExpires) {
			t.Fatalf("no Expires gave %d %v", secs, ok)
		}
	})
}
