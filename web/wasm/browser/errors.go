package browser

import (
	"context"
	"errors"
	"strings"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/chainapi"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/meter"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/txbuild"
	"github.com/paysip/paysip/wallet"
)

// Stable error codes a page shows a message for (Contract A).
const (
	CodeBadRequest      = "bad_request"       // a wrong argument from the page
	CodeBadAddress      = "bad_address"       // not an address of this network
	CodeNoWallet        = "no_wallet"         // create or restore first
	CodeWalletExists    = "wallet_exists"     // create/restore over a wallet
	CodeLocked          = "locked"            // unlock first
	CodeBadPassphrase   = "bad_passphrase"    // wrong passphrase
	CodeBadMnemonic     = "bad_mnemonic"      // not a valid BIP39 mnemonic
	CodeNoFunds         = "no_funds"          // the wallet cannot pay this
	CodePriceAboveLimit = "price_above_limit" // the payee asks more than the caller allowed
	CodeBadTerms        = "bad_terms"         // other terms the caller's limits refuse
	CodePaymentRefused  = "payment_refused"   // the peer refused a payment or the protocol
	CodePaymentLate     = "payment_late"      // the payer fell behind the meter
	CodeAckTimeout      = "ack_timeout"       // the payee stopped acknowledging
	CodeCallDropped     = "call_dropped"      // the connection closed mid-protocol
	CodeNodeUnreachable = "node_unreachable"  // the SIP API did not answer
	CodeRateLimited     = "rate_limited"      // the SIP API asks to slow down
	CodeNoFaucet        = "no_faucet"         // no faucet on this server/network
	CodeTxRejected      = "tx_rejected"       // the node refused a transaction
	CodeNotPayee        = "not_payee"         // serve before payee()
	CodeBusy            = "busy"              // too many sessions at once
	CodeStorage         = "storage"           // IndexedDB failed (quota, closed)
	CodeCancelled       = "cancelled"         // the page ended it
	CodeInternal        = "internal"          // a bug of ours
)

// Error is an error with its stable code.
type Error struct {
	Code string
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Code returns the stable code of err.
func Code(err error) string {
	var e *Error
	var api *chainapi.APIError
	var funds *txbuild.InsufficientFundsError
	var pe *channel.ProtocolError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, wallet.ErrWrongPassphrase):
		return CodeBadPassphrase
	case errors.Is(err, wallet.ErrBadMnemonic):
		return CodeBadMnemonic
	case errors.Is(err, wallet.ErrExists):
		return CodeWalletExists
	case errors.Is(err, wallet.ErrNetworkMismatch):
		return CodeBadAddress
	case errors.As(err, &funds), errors.Is(err, meter.ErrCannotAfford), errors.Is(err, meter.ErrBudgetBelowMinimum):
		return CodeNoFunds
	case errors.Is(err, channel.ErrBadTerms) && strings.Contains(err.Error(), "price"):
		return CodePriceAboveLimit
	case errors.Is(err, channel.ErrBadTerms), errors.Is(err, channel.ErrFundingTooSmall):
		return CodeBadTerms
	case errors.Is(err, agent.ErrPaymentLate):
		return CodePaymentLate
	case errors.Is(err, agent.ErrAckTimeout):
		return CodeAckTimeout
	case errors.Is(err, channel.ErrPeer), errors.Is(err, agent.ErrResumeRefused), errors.As(err, &pe):
		return CodePaymentRefused
	case errors.Is(err, agent.ErrConnClosed):
		return CodeCallDropped
	case errors.Is(err, chain.ErrNonFinal), errors.Is(err, chain.ErrConflict), errors.Is(err, chain.ErrRejected):
		return CodeTxRejected
	case errors.As(err, &api):
		switch api.Code {
		case "no_faucet":
			return CodeNoFaucet
		case "rate_limit":
			return CodeRateLimited
		case "bad_request", "limit":
			return CodeBadRequest
		}
		return CodeNodeUnreachable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return CodeCancelled
	case errors.Is(err, chainapi.ErrUnreachable), errors.Is(err, chainapi.ErrBadAnswer), errors.Is(err, chain.ErrOffline):
		return CodeNodeUnreachable
	case errors.Is(err, store.ErrNotStored), errors.Is(err, store.ErrNotFound):
		return CodeStorage
	}
	return CodeInternal
}
