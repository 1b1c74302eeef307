package btcnode

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// btcd deletes its regtest database at every start (btcd.go,
// removeRegressionDB: "regression test needs a clean database for each
// run"). A payee or payer restarted after a crash must find its channels'
// transactions on the chain, so the node keeps the chain itself: every
// block the node accepts is appended, length-prefixed and fsync'd, to
// <DataDir>/chain.blocks, and submitted again on the next start.

// chainLog is the append-only file of the node's blocks, heights 1..n.
type chainLog struct {
	mu     sync.Mutex
	path   string
	hashes []chainhash.Hash // hashes[i] is the block at height i+1
}

func openChainLog(path string) (*chainLog, []*wire.MsgBlock, error) {
	l := &chainLog{path: path}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var blocks []*wire.MsgBlock
	for {
		var n uint32
		if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			// A torn last record (crash while appending): keep what is whole.
			break
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			break
		}
		b := new(wire.MsgBlock)
		if err := b.Deserialize(bytes.NewReader(buf)); err != nil {
			return nil, nil, fmt.Errorf("%s: corrupt block at height %d: %w", path, len(blocks)+1, err)
		}
		blocks = append(blocks, b)
		l.hashes = append(l.hashes, b.BlockHash())
	}
	return l, blocks, nil
}

// rewrite replaces the file with exactly blocks (after a torn record or a
// reorganisation).
func (l *chainLog) rewrite(blocks []*wire.MsgBlock) error {
	tmp := l.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	l.hashes = l.hashes[:0]
	for _, b := range blocks {
		if err := writeBlock(f, b); err != nil {
			f.Close()
			return err
		}
		l.hashes = append(l.hashes, b.BlockHash())
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	f.Close()
	return os.Rename(tmp, l.path)
}

func writeBlock(w io.Writer, b *wire.MsgBlock) error {
	var buf bytes.Buffer
	if err := b.Serialize(&buf); err != nil {
		return err
	}
	if err := binary.Write(w, binary.LittleEndian, uint32(buf.Len())); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// restore submits the saved blocks to a fresh node.
func (n *Node) restore(blocks []*wire.MsgBlock) error {
	for i, b := range blocks {
		if err := n.client.SubmitBlock(btcutil.NewBlock(b), nil); err != nil {
			return fmt.Errorf("restoring block %d: %w", i+1, err)
		}
	}
	if len(blocks) > 0 {
		n.log.Info("regtest chain restored", "height", len(blocks))
	}
	return nil
}

// sync appends the node's blocks that the log lacks, and rewrites the log
// if the node's chain no longer contains the last logged block.
func (n *Node) sync() error {
	l := n.chain
	l.mu.Lock()
	defer l.mu.Unlock()
	tip, err := n.client.GetBlockCount()
	if err != nil {
		return err
	}
	if have := int64(len(l.hashes)); have > 0 {
		h, err := n.client.GetBlockHash(min(have, tip))
		if err != nil {
			return err
		}
		if have > tip || *h != l.hashes[have-1] {
			return n.resync(tip)
		}
	}
	if int64(len(l.hashes)) == tip {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	var added []chainhash.Hash
	for h := int64(len(l.hashes)) + 1; h <= tip; h++ {
		b, err := n.block(h)
		if err != nil {
			return err
		}
		if err := writeBlock(w, b); err != nil {
			return err
		}
		added = append(added, b.BlockHash())
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	l.hashes = append(l.hashes, added...)
	return nil
}

// resync rewrites the whole log from the node (a reorganisation).
func (n *Node) resync(tip int64) error {
	blocks := make([]*wire.MsgBlock, 0, tip)
	for h := int64(1); h <= tip; h++ {
		b, err := n.block(h)
		if err != nil {
			return err
		}
		blocks = append(blocks, b)
	}
	return n.chain.rewrite(blocks)
}

// block fetches the node's block at height h.
func (n *Node) block(h int64) (*wire.MsgBlock, error) {
	hash, err := n.client.GetBlockHash(h)
	if err != nil {
		return nil, err
	}
	return n.client.GetBlock(hash)
}
