package sipserver

import (
	"errors"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/sipreg"
)

// onRegister is the registrar (RFC 3261 section 10.3).
func (s *Server) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	to := req.To()
	if to == nil || req.CallID() == nil || req.CSeq() == nil {
		s.respond(tx, req, 400, "Bad Request")
		return
	}
	if !s.isLocal(to.Address) {
		s.respond(tx, req, 403, "Forbidden: not this domain")
		return
	}
	aor := sipreg.AOR(sip.Uri{User: to.Address.User, Host: s.cfg.Domain})
	// Contacts first: a malformed request is refused before any challenge.
	var contacts []*sip.ContactHeader
	wildcard := false
	for _, h := range req.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			s.respond(tx, req, 400, "Bad Request: Contact")
			return
		}
		if c.Address.Wildcard {
			wildcard = true
			continue
		}
		contacts = append(contacts, c)
	}
	if !s.cfg.Open {
		user := s.authenticate(req, tx, false)
		if user == "" {
			return
		}
		// A registration binds contacts only for the account's own
		// address, or lists the account in the directory.
		switch to.Address.User {
		case user:
		case DirectoryUser:
			for _, c := range contacts {
				if own, _ := c.Params.Get("+paysip.aor"); strings.Trim(own, `"`) != "sip:"+user+"@"+s.cfg.Domain {
					s.respond(tx, req, 403, "Forbidden: a directory listing must name your own address in +paysip.aor")
					return
				}
			}
		default:
			s.log.Warn("registration for another account's address", "user", user, "aor", aor)
			s.respond(tx, req, 403, "Forbidden: you may register only your own address")
			return
		}
	}
	r := sipreg.Request{AOR: aor, Contacts: contacts, Wildcard: wildcard, CallID: req.CallID().Value(),
		CSeq: req.CSeq().SeqNo, Source: req.Source(), Transport: req.Transport()}
	if e := req.GetHeader("Expires"); e != nil {
		n, err := strconv.ParseUint(strings.TrimSpace(e.Value()), 10, 32)
		if err != nil {
			s.respond(tx, req, 400, "Bad Request: Expires")
			return
		}
		v := uint32(n)
		r.Expires = &v
	}
	for _, p := range req.GetHeaders("Path") {
		for _, v := range splitList(p.Value()) {
			r.Path = append(r.Path, v)
		}
	}
	bindings, err := s.reg.Apply(r, s.now())
	var brief *sipreg.IntervalTooBriefError
	switch {
	case errors.As(err, &brief):
		s.respond(tx, req, 423, "Interval Too Brief", sip.NewHeader("Min-Expires", strconv.Itoa(int(brief.Min))))
		return
	case errors.Is(err, sipreg.ErrWildcard):
		s.respond(tx, req, 400, "Bad Request: "+err.Error())
		return
	case errors.Is(err, sipreg.ErrOutOfOrder):
		s.respond(tx, req, 500, "Server Internal Error: "+err.Error())
		return
	case err != nil:
		s.respond(tx, req, 500, "Server Internal Error")
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	now := s.now()
	for _, b := range bindings {
		c := b.Contact.Clone()
		secs := int(b.Expires.Sub(now).Seconds() + 0.5)
		c.Params.Add("expires", strconv.Itoa(secs))
		res.AppendHeader(c)
	}
	for _, p := range r.Path {
		res.AppendHeader(sip.NewHeader("Path", p))
	}
	if len(r.Path) > 0 {
		res.AppendHeader(sip.NewHeader("Supported", "path"))
	}
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")))
	if err := tx.Respond(res); err != nil {
		s.log.Debug("register respond", "err", err)
	}
	s.log.Debug("registered", "aor", aor, "bindings", len(bindings), "from", req.Source(), "transport", req.Transport())
}

// splitList splits a header value on commas outside <> and quotes.
func splitList(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i, c := range v {
		switch {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			depth++
		case c == '>':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(v[start:i]))
			start = i + 1
		}
	}
	if t := strings.TrimSpace(v[start:]); t != "" {
		out = append(out, t)
	}
	return out
}
