package breaker_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
)

func Example() {
	b := breaker.New("user-api", breaker.Settings{MinRequests: 2, OpenBase: time.Minute, OpenMax: time.Hour},
		breaker.WithOnStateChange(func(name string, from, to breaker.State) {
			fmt.Printf("%s: %v -> %v\n", name, from, to)
		}))

	send := func(fail bool) error {
		var err error // the request's own result, captured by the closure
		if berr := b.Do(func() breaker.Outcome {
			if fail {
				err = errors.New("connection refused")
				return breaker.Failure
			}
			return breaker.Success
		}); berr != nil {
			return berr // refused: the request was not sent
		}
		return err
	}

	fmt.Println(send(true))
	fmt.Println(send(true))
	err := send(false)
	fmt.Println(err, errors.Is(err, breaker.ErrOpen), b.Ready(), b.Trips())
	// Output:
	// connection refused
	// user-api: closed -> open
	// connection refused
	// breaker: circuit open true false 1
}

func ExampleLimiter() {
	l := breaker.NewLimiter(10, 2) // 10 requests/s, bursts of 2
	now := time.Now()
	for range 3 {
		if l.AllowAt(now) {
			fmt.Println("allowed")
		} else {
			fmt.Println(breaker.ErrRateLimited, "- retry after", l.RetryAfterAt(now))
		}
	}
	// Output:
	// allowed
	// allowed
	// breaker: rate limited - retry after 100ms
}
