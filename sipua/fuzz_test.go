package sipua

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// bodyTransport answers every HTTP request with one body: the directory
// as a server (any server the user points at) might send it.
type bodyTransport struct {
	status int
	body   []byte
}

func (b bodyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: b.status, Status: http.StatusText(b.status), Body: io.NopCloser(strings.NewReader(string(b.body))),
		Header: http.Header{"Content-Type": {"application/json"}}, Request: req}, nil
}

// FuzzFetchDirectory: the directory JSON (GET /api/directory) comes from
// the server the user names: whatever it sends, FetchDirectory returns the
// entries or an error saying it is the directory, never a panic, and what
// it returns encodes and decodes to the same listings (round trip).
func FuzzFetchDirectory(f *testing.F) {
	f.Add(200, []byte(`{"entries":[{"aor":"sip:tutor@paysip.test","name":"Tutor","price_sat_per_min":60000,"payee_key":"02ab","contact":"sip:tutor@127.0.0.1:5070","expires_in":300}]}`))
	f.Add(200, []byte(`{"entries":null}`))
	f.Add(200, []byte(`{"entries":[{"price_sat_per_min":1e30}]}`))
	f.Add(200, []byte(`[`))
	f.Add(500, []byte(`oops`))
	old := http.DefaultClient.Transport
	f.Cleanup(func() { http.DefaultClient.Transport = old })
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		http.DefaultClient.Transport = bodyTransport{status: status, body: body}
		defer func() { http.DefaultClient.Transport = old }()
		ls, err := FetchDirectory(context.Background(), "http://directory.invalid")
		if err != nil {
			if ls != nil || !strings.HasPrefix(err.Error(), "directory: ") {
				t.Fatalf("error %v with %d listings", err, len(ls))
			}
			return
		}
		if status != http.StatusOK {
			t.Fatalf("status %d accepted", status)
		}
		enc, err := json.Marshal(ls)
		if err != nil {
			t.Fatal(err)
		}
		var again []Listing
		if err := json.Unmarshal(enc, &again); err != nil || (len(ls) > 0 && !reflect.DeepEqual(ls, again)) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, ls, again)
		}
	})
}
