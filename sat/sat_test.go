package sat

import (
	"errors"
	"math"
	"testing"
)

func TestArithmetic(t *testing.T) {
	if s, err := Add(1, 2); err != nil || s != 3 {
		t.Fatalf("Add(1,2) = %d, %v", s, err)
	}
	if _, err := Add(MaxMoney, 1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Add past MaxMoney: %v", err)
	}
	if _, err := Add(math.MaxInt64, math.MaxInt64); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Add of int64 max: %v", err)
	}
	if _, err := Add(-1, 5); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Add of negative: %v", err)
	}
	if _, err := Sub(1, 2); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Sub below zero: %v", err)
	}
	if d, err := Sub(5, 2); err != nil || d != 3 {
		t.Fatalf("Sub(5,2) = %d, %v", d, err)
	}
	if s, err := Sum(1, 2, 3); err != nil || s != 6 {
		t.Fatalf("Sum = %d, %v", s, err)
	}
}

func TestMulDivCeil(t *testing.T) {
	cases := []struct {
		a, b, d, want int64
		err           bool
	}{
		{60000, 1, 60, 1000, false},
		{60000, 3600, 60, 3_600_000, false},
		{1, 1, 60, 1, false},    // a started second of a 1 sat/min line costs 1 sat
		{1, 61, 60, 2, false},   // rounds up
		{7, 120, 60, 14, false}, // exact
		{0, 5, 60, 0, false},
		{math.MaxInt64, math.MaxInt64, 1, 0, true},
		{MaxMoney, 2, 1, 0, true},
		{-1, 1, 1, 0, true},
		{1, 1, 0, 0, true},
	}
	for _, c := range cases {
		got, err := MulDivCeil(c.a, c.b, c.d)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("MulDivCeil(%d,%d,%d) = %d, %v; want %d, err=%v", c.a, c.b, c.d, got, err, c.want, c.err)
		}
	}
}
