package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/paysip/paysip/sipauth"
	"github.com/paysip/paysip/sipreg"
	"github.com/paysip/paysip/store"
)

// Several serve nodes of one domain (docs/deploy.md): the registrar's
// bindings persisted through the store (sipreg.Persister), and the digest
// nonce secret every node shares.

// bindingStore is sipreg.Store on package store (Contract C): the store
// keeps bindings opaque, sipreg encodes them. writer names this process
// (random, new at each start) on the rows it writes, so that its change
// feed skips them in the query.
type bindingStore struct {
	db     *store.DB
	writer string
}

func newBindingStore(db *store.DB) bindingStore {
	var b [8]byte
	rand.Read(b[:])
	return bindingStore{db: db, writer: hex.EncodeToString(b[:])}
}

func (s bindingStore) PutBindings(ctx context.Context, recs []sipreg.Record) error {
	bs := make([]store.StoredBinding, len(recs))
	for i, r := range recs { // Updated zero: the store stamps it (one clock on Postgres)
		bs[i] = store.StoredBinding{AOR: r.AOR, Key: r.Key, Expires: r.Expires, Data: r.Data, Writer: s.writer}
	}
	return s.db.PutBindings(ctx, bs)
}

func records(bs []store.StoredBinding, err error) ([]sipreg.Record, error) {
	out := make([]sipreg.Record, len(bs))
	for i, b := range bs {
		out[i] = sipreg.Record{AOR: b.AOR, Key: b.Key, Expires: b.Expires, Data: b.Data, Updated: b.Updated}
	}
	return out, err
}

func (s bindingStore) Bindings(ctx context.Context, aor string, now time.Time) ([]sipreg.Record, error) {
	return records(s.db.Bindings(ctx, aor, now))
}

func (s bindingStore) AllBindings(ctx context.Context, now time.Time) ([]sipreg.Record, error) {
	return records(s.db.AllBindings(ctx, now))
}

func (s bindingStore) BindingsChangedSince(ctx context.Context, since time.Time) ([]sipreg.Record, error) {
	return records(s.db.BindingsChangedSince(ctx, since))
}

// BindingsChangedSinceMark is the feed without this node's own rows
// (sipreg.MarkedFeed).
func (s bindingStore) BindingsChangedSinceMark(ctx context.Context, since time.Time) ([]sipreg.Record, time.Time, error) {
	bs, mark, err := s.db.BindingsChangedSinceExcept(ctx, since, s.writer)
	recs, err := records(bs, err)
	return recs, mark, err
}

func (s bindingStore) ReclaimBindings(ctx context.Context, now time.Time) (int, error) {
	return s.db.ReclaimBindings(ctx, now)
}

// persistBindings attaches the store to the registry, loads every live
// binding (a restarted node routes to everyone registered before) and
// follows the other nodes' changes until stop, which returns once the
// last changes are written.
func persistBindings(ctx context.Context, reg *sipreg.Registry, db *store.DB, log *slog.Logger) (stop func(), err error) {
	p := reg.Persist(sipreg.PersistConfig{Store: newBindingStore(db), Log: log})
	if err := p.Load(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.Run(ctx); err != nil {
			log.Warn("bindings not written at shutdown; their clients register again at their next refresh", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// nonceSecretName is the store's name of the shared digest nonce secret.
const nonceSecretName = "sip-nonce"

// nonceSecret is the HMAC secret of digest nonces (and Record-Route
// tokens): --nonce-secret, else --nonce-secret-file, else the one kept in
// the store (made by the first node; every node on the store shares it).
func nonceSecret(ctx context.Context, value, file string, db *store.DB) ([]byte, error) {
	switch {
	case value != "":
		s, err := sipauth.ParseSecret(value)
		if err != nil {
			return nil, fmt.Errorf("--nonce-secret: %w", err)
		}
		return s, nil
	case file != "":
		return sipauth.ReadSecretFile(file)
	}
	return db.SharedSecret(ctx, nonceSecretName, sipauth.SecretLen)
}
