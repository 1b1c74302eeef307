package main

import (
	"crypto/md5"
	"encoding/hex"
)

// md5hex is the hex MD5 of s (a digest HA1, RFC 2617 section 3.2.2.2).
func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}
