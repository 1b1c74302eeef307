package main

import (
	"strings"
	"sync"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + e.out }

func contains(s, sub string) bool { return strings.Contains(s, sub) }
