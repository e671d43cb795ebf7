// Package textdist measures how far apart two names are, for "did you
// mean" hints in validation errors and explanations.
package textdist

import "strings"

// maxLen is the longest name compared; longer ones are never close.
const maxLen = 64

// Distance is the Levenshtein distance of a and b, bytewise; names longer
// than 64 bytes are 99 apart.
func Distance(a, b string) int {
	if len(a) > maxLen || len(b) > maxLen {
		return 99
	}
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Closest returns the name in names nearest to s, ignoring case, when it
// is at most within edits of it (a typo), "" otherwise; the first of
// equals wins.
func Closest(s string, names []string, within int) string {
	best, bestDist := "", within+1
	s = strings.ToLower(s)
	for _, n := range names {
		if d := Distance(s, strings.ToLower(n)); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}
