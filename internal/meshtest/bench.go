package meshtest

import (
	"slices"
	"testing"
	"time"
)

// ReportLatency reports the median, the 99th percentile (nearest rank)
// and the maximum of lat in milliseconds, as the metrics p50-ms<suffix>,
// p99-ms<suffix> and max-ms<suffix>. It sorts lat in place; lat must not
// be empty.
func ReportLatency(b *testing.B, lat []time.Duration, suffix string) {
	slices.Sort(lat)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(lat))+0.999999) - 1
		return lat[min(max(i, 0), len(lat)-1)]
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(rank(0.50)), "p50-ms"+suffix)
	b.ReportMetric(ms(rank(0.99)), "p99-ms"+suffix)
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms"+suffix)
}
