package discovery

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

func instances(weights ...int) []Instance {
	list := make([]Instance, len(weights))
	for i, w := range weights {
		list[i] = Instance{Address: fmt.Sprintf("10.0.0.%d:80", i), Weight: w}
	}
	return list
}

// picks returns the indexes (from the addresses instances gives) of n
// picks, -1 for none.
func picks(p *Picker, n int, accept func(*Instance) bool) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = -1
		if in := p.Pick(accept); in != nil {
			if _, err := fmt.Sscanf(in.Address, "10.0.0.%d:80", &out[i]); err != nil {
				panic(err)
			}
		}
	}
	return out
}

func counts(idx []int, n int) []int {
	c := make([]int, n)
	for _, i := range idx {
		c[i]++
	}
	return c
}

func TestPickerRoundRobin(t *testing.T) {
	p := NewPicker(instances(0, 0, 0))
	if p.Len() != 3 {
		t.Fatalf("Len = %d", p.Len())
	}
	if got, want := picks(p, 7, nil), []int{0, 1, 2, 0, 1, 2, 0}; !slices.Equal(got, want) {
		t.Fatalf("picks = %v, want %v", got, want)
	}
	// Equal non-zero weights are plain round robin too.
	p = NewPicker(instances(5, 5))
	if got, want := picks(p, 4, nil), []int{0, 1, 0, 1}; !slices.Equal(got, want) {
		t.Fatalf("picks = %v, want %v", got, want)
	}
}

func TestPickerWeighted(t *testing.T) {
	for _, weights := range [][]int{{3, 1}, {9, 1}, {1, 2, 3}, {0, 2}, {10, 10, 5}, {-1, 3}} {
		p := NewPicker(instances(weights...))
		w, total := reduced(weights)
		if got := counts(picks(p, 5*total, nil), len(weights)); !slices.Equal(got, scale(w, 5)) {
			t.Errorf("weights %v: %d picks split %v, want %v", weights, 5*total, got, scale(w, 5))
		}
	}
}

func scale(w []int, k int) []int {
	out := make([]int, len(w))
	for i := range w {
		out[i] = w[i] * k
	}
	return out
}

func TestPickerEmpty(t *testing.T) {
	for _, p := range []*Picker{NewPicker(nil), NewPicker([]Instance{})} {
		if p.Len() != 0 || p.Pick(nil) != nil || p.Pick(func(*Instance) bool { return true }) != nil {
			t.Fatal("empty picker picked something")
		}
	}
}

func TestPickerAccept(t *testing.T) {
	t.Run("rejected instance never picked, others share its turns evenly", func(t *testing.T) {
		p := NewPicker(instances(0, 0, 0, 0))
		notOne := func(in *Instance) bool { return in.Address != "10.0.0.1:80" }
		got := counts(picks(p, 1200, notOne), 4)
		if want := []int{400, 0, 400, 400}; !slices.Equal(got, want) {
			t.Fatalf("split %v, want %v", got, want)
		}
	})
	t.Run("weighted shares hold among accepted instances", func(t *testing.T) {
		p := NewPicker(instances(3, 5, 1))
		notMiddle := func(in *Instance) bool { return in.Address != "10.0.0.1:80" }
		got := counts(picks(p, 900, notMiddle), 3)
		// 3:1 between the two left, within a pick per turn of the cycle.
		if got[1] != 0 || got[0]+got[2] != 900 || got[0] < 3*got[2]-4 || got[0] > 3*got[2]+4 {
			t.Fatalf("split %v, want about 675/0/225", got)
		}
	})
	t.Run("only one accepted, beyond the probes", func(t *testing.T) {
		p := NewPicker(instances(make([]int, 10)...))
		onlySeven := func(in *Instance) bool { return in.Address == "10.0.0.7:80" }
		for _, i := range picks(p, 50, onlySeven) {
			if i != 7 {
				t.Fatalf("picked %d", i)
			}
		}
	})
	t.Run("none accepted", func(t *testing.T) {
		p := NewPicker(instances(1, 2, 3))
		calls := 0
		none := func(*Instance) bool { calls++; return false }
		if in := p.Pick(none); in != nil {
			t.Fatalf("picked %v", in.Address)
		}
		if calls < 3 || calls > 3+probesBeforeScan {
			t.Fatalf("accept called %d times for 3 instances", calls)
		}
	})
	t.Run("accept sees the picker's instances", func(t *testing.T) {
		list := instances(0, 0)
		p := NewPicker(list)
		var seen *Instance
		got := p.Pick(func(in *Instance) bool { seen = in; return true })
		if got != seen || got != &list[0] {
			t.Fatal("Pick does not return the accepted instance from the list")
		}
	})
}

// TestPickerConcurrent runs Pick from many goroutines: under -race it
// proves Pick lock-free and race-free, and since every pick takes its own
// schedule position, the split over whole cycles is still exact.
func TestPickerConcurrent(t *testing.T) {
	p := NewPicker(instances(3, 1, 0, 4)) // weights 3,1,1,4: a cycle of 9
	const goroutines, each = 8, 900
	var wg sync.WaitGroup
	results := make([][]int, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			results[g] = picks(p, each, nil)
		})
	}
	wg.Wait()
	total := make([]int, 4)
	for _, r := range results {
		for i, c := range counts(r, 4) {
			total[i] += c
		}
	}
	if want := scale([]int{3, 1, 1, 4}, goroutines*each/9); !slices.Equal(total, want) {
		t.Fatalf("concurrent split %v, want %v", total, want)
	}

	// With accept, concurrently: no rejected instance ever comes back.
	notFirst := func(in *Instance) bool { return in.Address != "10.0.0.0:80" }
	for range goroutines {
		wg.Go(func() {
			for range each {
				if in := p.Pick(notFirst); in == nil || in.Address == "10.0.0.0:80" {
					t.Errorf("picked %v", in)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestPickerAllocs(t *testing.T) {
	p := NewPicker(instances(3, 1, 2))
	accept := func(in *Instance) bool { return in.Weight != 3 }
	if n := testing.AllocsPerRun(1000, func() { p.Pick(nil); p.Pick(accept) }); n != 0 {
		t.Fatalf("Pick allocates %.1f times", n)
	}
}

// TestPeekForecastsPick: with no other call in between, Peek names the
// instance the next Pick returns, with and without an accept filter, and
// leaves the rotation where it was.
func TestPeekForecastsPick(t *testing.T) {
	var list []Instance
	for i := range 9 {
		list = append(list, Instance{Address: fmt.Sprint("i", i), Weight: 1 + i%3})
	}
	p := NewPicker(list)
	notB := func(in *Instance) bool { return in.Address != "i1" }
	// Two instances: which one the scan after the probes finds depends on
	// where it starts.
	two := func(in *Instance) bool { return in.Address == "i0" || in.Address == "i5" }
	for i := range 50 {
		for _, accept := range []func(*Instance) bool{nil, notB, two} {
			peek := p.Peek(accept)
			if again := p.Peek(accept); again != peek {
				t.Fatalf("call %d: Peek moved the rotation: %v then %v", i, peek.Address, again.Address)
			}
			if got := p.Pick(accept); got != peek {
				t.Fatalf("call %d: Peek said %s, Pick gave %s", i, peek.Address, got.Address)
			}
		}
	}
	if p.Peek(func(*Instance) bool { return false }) != nil {
		t.Error("Peek found an instance nothing accepts")
	}
}

// TestPickerSingleInstanceWritesNothing: with one instance there is no
// turn to take, so picks leave the shared cursor alone (no cache line
// written by every caller).
func TestPickerSingleInstanceWritesNothing(t *testing.T) {
	p := NewPicker(instances(3))
	for range 10 {
		if p.Pick(nil) == nil || p.Pick(func(*Instance) bool { return true }) == nil {
			t.Fatal("no pick")
		}
	}
	if p.Pick(func(*Instance) bool { return false }) != nil {
		t.Fatal("picked a refused instance")
	}
	if k := p.next.Load(); k != 0 {
		t.Fatalf("cursor written %d times", k)
	}
}
