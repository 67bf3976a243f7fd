// Package artifact handles job artifacts: the compiled Go binaries of Weir
// jobs, which are what TaskManagers run (DESIGN.md §2: the binary is the
// artifact).
//
//	client ── upload ──▶ Dispatcher: CheckFile, Store.Put ──▶ <dir>/<digest>
//	                                                              │ fetch
//	TaskManager: Cache.Get(digest) ◀──────────────────────────────┘
//	             verifies the digest, keeps <dir>/<digest>, runs it
//
// Check and CheckFile tell a Weir job binary this machine can run from a
// script, a data file, a Go program that does not use Weir, or a binary built
// for another platform, with an *Error that says what is wrong and how to fix
// it. Artifacts are named by their Digest, the hex SHA-256 of their bytes, so
// the Store keeps each binary once and a Cache fetches it once.
package artifact

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// Error is why a file is not a Weir job binary this machine can run: the
// file, what is wrong with it and what to do about it, kept apart so that a
// CLI or a REST API can show them as it likes.
type Error struct {
	// Path names the file as the caller gave it (a path, or an upload's name).
	Path string
	// Problem says what is wrong, as a phrase that follows the path:
	// "is a directory", "is not a Go program", ….
	Problem string
	// Fix says what to do about it, e.g. "chmod +x ./myjob". It may be empty.
	Fix string
}

// Error returns "PATH PROBLEM; FIX", the path quoted if it has spaces or
// unprintable characters.
func (e *Error) Error() string {
	s := showPath(e.Path) + " " + e.Problem
	if e.Fix != "" {
		s += "; " + e.Fix
	}
	return s
}

// showPath returns p as it is if it reads unambiguously in a sentence, else
// quoted.
func showPath(p string) string {
	if p == "" || strings.ContainsAny(p, " \t\"';") || strconv.Quote(p) != `"`+p+`"` {
		return strconv.Quote(p)
	}
	return p
}

// digestLen is the length of a digest: 64 lower-case hex characters.
const digestLen = 2 * sha256.Size

// ValidDigest reports whether s is an artifact digest: the hex SHA-256 of an
// artifact's bytes, 64 lower-case hex characters. Store and Cache name their
// files by digest, so a valid digest is also a safe file name.
func ValidDigest(s string) bool {
	if len(s) != digestLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// digestOf returns the hex digest a hasher has accumulated.
func digestOf(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// badDigest is the error for a string that is not a digest.
func badDigest(s string) error {
	return fmt.Errorf("artifact digest %q is not valid: a digest is the SHA-256 of the artifact's bytes as %d lower-case hex characters (what sha256sum prints)", s, digestLen)
}
