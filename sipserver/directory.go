package sipserver

import (
	"encoding/json"
	"github.com/paysip/paysip/sipext"
	"net/http"
	"strconv"

	"github.com/paysip/paysip/sipreg"
)

// Listing is one priced endpoint of the directory: a contact registered at
// sip:directory@DOMAIN whose parameters carry its offer (the original
// write-up's shared address). docs/protocol.md describes the parameters.
type Listing = sipext.Listing

// Directory lists the priced endpoints registered now.
func (s *Server) Directory() []Listing {
	now := s.now()
	out := []Listing{}
	for _, b := range s.reg.Lookup(sipreg.AOR(sipURI(DirectoryUser, s.cfg.Domain)), now) {
		l := Listing{Contact: b.Contact.Address.String(), ExpiresIn: int(b.Expires.Sub(now).Seconds())}
		l.AOR, _ = b.Param(sipext.ParamAOR)
		l.Name, _ = b.Param(sipext.ParamName)
		l.PayeeKey, _ = b.Param(sipext.ParamKey)
		if p, ok := b.Param(sipext.ParamPrice); ok {
			l.PriceSatPerMin, _ = strconv.ParseInt(p, 10, 64)
		}
		if l.AOR == "" || l.PriceSatPerMin <= 0 {
			continue // a member that only listens (a caller asking)
		}
		out = append(out, l)
	}
	return out
}

func (s *Server) serveDirectory(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{"domain": s.cfg.Domain, "directory": "sip:" + DirectoryUser + "@" + s.cfg.Domain, "entries": s.Directory()})
}
