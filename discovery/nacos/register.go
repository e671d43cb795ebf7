package nacos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/lightmesh/lightmesh/discovery"
)

// maxNacosWeight is the largest weight Nacos accepts.
const maxNacosWeight = 10000

// Registration keeps one instance registered in Nacos naming. Use
// Register or Discovery.Register; call Close to deregister.
//
// The instance is ephemeral: it lives as long as the naming client's
// connection, so a process that dies without Close disappears as soon as
// the server notices the connection is gone, and the SDK registers it
// again by itself after a reconnect.
type Registration struct {
	client naming_client.INamingClient
	owned  bool                     // Close closes client: it was made for this registration
	disc   *Discovery               // the Discovery whose client it shares, if any
	reg    vo.RegisterInstanceParam // what registered it
	dir    string
	once   sync.Once
	err    error
}

// Register registers in as an instance of service in group (DefaultGroup
// when empty), with a naming client of its own, closed by Close. A
// process that also discovers, or registers more than one service,
// shares one client (one connection) with Discovery.Register instead.
//
// An in.Address without a host (":8080") or with an unspecified one
// ("0.0.0.0:8080") is completed by discovery.AdvertiseAddress: the
// POD_IP environment variable, else the address of the interface of the
// default route, never loopback unless given. Labels become the
// instance's metadata; the Nacos weight is in.Weight (1 when zero), so
// Discovery reads it back as in.Weight×100; Unhealthy registers it
// unhealthy.
func Register(cfg Config, service, group string, in discovery.Instance) (*Registration, error) {
	param, err := registerParam(service, group, in)
	if err != nil {
		return nil, err
	}
	client, dir, err := newNamingClient(cfg)
	if err != nil {
		return nil, err
	}
	r, err := registerWith(client, param, cfg, newDiagnosis(cfg))
	if err != nil {
		closeNamingClient(client)
		removeDir(dir)
		return nil, err
	}
	r.owned, r.dir = true, dir
	return r, nil
}

// Register registers in as an instance of service in d's group through
// d's naming client, so that discovery and registration share one
// connection; Close deregisters it and leaves the client open. The
// address, labels and weight are as for the package's Register.
//
// Nacos 2.x keeps one instance per service and connection: registering
// a second instance of the same service through the same Discovery
// replaces the first, whose Close then does nothing (Nacos would
// deregister the one that replaced it). A process registers itself once
// per service; a
// process that runs several instances of one service (tests) uses a
// client per instance, with the package's Register.
//
// A Register that returns an error registers nothing, now or when the
// client reconnects, and leaves the service's registration in force as it
// was. When its request reached the server (its answer came too late),
// the failed instance can be seen in its place for a moment, until the
// Discovery tells the server otherwise: it tells the SDK at once, and the
// server five times over the next 31 s once it answers, since the SDK may
// register the instance again by itself. It does the same after a
// Register that replaced another and after a Registration's Close.
func (d *Discovery) Register(service string, in discovery.Instance) (*Registration, error) {
	param, err := registerParam(service, d.group, in)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	d.regMu.Lock()
	defer d.regMu.Unlock()
	r, err := registerWith(d.client, param, d.cfg, d.diag)
	if err != nil {
		d.assert(param) // an error here is the reassertion's to mend
		if !errors.Is(err, errRegisterRefused) {
			d.reassert(param) // the request may have reached the server
		}
		return nil, err
	}
	prior := d.regs[service]
	r.disc = d
	d.regs[service] = r
	if prior != nil || d.reasserting[service] != nil {
		d.reassert(param) // an earlier snapshot of the SDK's may put back what this replaced
	}
	return r, nil
}

// assert tells the SDK and the server what d.regs says of param's
// service: the registration in force, or none (param then names the
// service, whatever its address: Nacos deregisters by service and
// connection). Called with regMu held.
//
// The SDK needs telling after a Register that failed: it keeps the
// instance of every registration, failed or not, as the service's, and
// registers it by itself on its next connection or recovered server
// check, so the failed instance would appear with no Registration to
// close it, in place of the registration in force. The server needs
// telling too: the failed request may have reached it.
func (d *Discovery) assert(param vo.RegisterInstanceParam) error {
	var (
		ok  bool
		err error
	)
	if cur := d.regs[param.ServiceName]; cur != nil {
		ok, err = d.client.RegisterInstance(cur.reg)
	} else {
		// The SDK forgets the instance even when the request fails.
		ok, err = d.client.DeregisterInstance(deregisterParam(param))
	}
	if err == nil && !ok {
		err = errors.New("server refused")
	}
	return err
}

// reassert tells the SDK and the server again what d.regs says of
// param's service (assert), after a Register that failed, a Register that
// replaced another, or the Close of a registration through d's client:
// five times once answered, 1, 2, 4, 8 and 16 s apart, retrying a failed
// one after 1 s, then up to every 16 s. Telling them once is not enough:
//   - the SDK registers again, on each reconnect or recovered server
//     check, a snapshot of its instances taken before, which can reach
//     the server after the assertion and undo it;
//   - when the failed request timed out, the SDK takes the client for
//     unhealthy until a server check answers, refusing the assertion,
//     and forgets the instance all the same while the server may keep it
//     on a connection that recovers.
//
// What d.regs says is read each time, so a Register or Close made
// meanwhile is what is asserted. One reassertion per service runs at a
// time; asking again starts it over at once. Called with regMu held.
func (d *Discovery) reassert(param vo.RegisterInstanceParam) {
	select {
	case <-d.stop:
		return // closed: the connection goes, and with it what it registered
	default:
	}
	if ra := d.reasserting[param.ServiceName]; ra != nil {
		ra.param = param
		select {
		case ra.again <- struct{}{}:
		default:
		}
		return
	}
	ra := &reassertion{param: param, again: make(chan struct{}, 1)}
	d.reasserting[param.ServiceName] = ra
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.runReassert(param.ServiceName, ra)
	}()
}

// reassertion is a service's reassert in progress.
type reassertion struct {
	param vo.RegisterInstanceParam // names the service, and what to deregister; guarded by regMu
	again chan struct{}            // reassert was asked again: start over
}

// reassertTimes is how many answered assertions a reassertion makes.
const reassertTimes = 5

// maxReassertWait bounds the wait between assertions.
const maxReassertWait = 16 * time.Second

// runReassert is reassert's goroutine for service. It ends after
// reassertTimes answered assertions, or when d closes. A request in
// flight (bounded by the client's timeout) delays Close.
func (d *Discovery) runReassert(service string, ra *reassertion) {
	var answered, failed int
	for {
		wait := time.Second << answered
		if failed > 0 {
			wait = min(time.Second<<(failed-1), maxReassertWait)
		}
		select {
		case <-d.stop:
			return
		case <-ra.again:
			answered, failed = 0, 0
			continue
		case <-time.After(wait):
		}
		d.regMu.Lock()
		select {
		case <-d.stop:
			d.regMu.Unlock()
			return
		default:
		}
		err := d.assert(ra.param)
		if err == nil {
			answered, failed = answered+1, 0
		} else {
			failed++
		}
		done := answered == reassertTimes
		if done {
			delete(d.reasserting, service)
		}
		d.regMu.Unlock()
		switch {
		case done:
			return
		case failed == 5:
			d.logger.Warn("lightmesh: nacos cannot tell the server what this process registered or closed; retrying", "service", service, "group", d.group, "err", firstLine(err))
		case err != nil:
			d.logger.Debug("lightmesh: nacos registration not asserted again", "service", service, "err", firstLine(err))
		}
	}
}

// firstLine returns err's message up to its first line break: the SDK's
// errors carry a stack trace after it.
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// registerParam checks in and completes its address.
func registerParam(service, group string, in discovery.Instance) (vo.RegisterInstanceParam, error) {
	if service == "" {
		return vo.RegisterInstanceParam{}, errors.New("nacos: register: empty service name")
	}
	if group == "" {
		group = DefaultGroup
	}
	addr, err := discovery.AdvertiseAddress(in.Address)
	if err != nil {
		return vo.RegisterInstanceParam{}, fmt.Errorf("nacos: register %s: %w", service, err)
	}
	in.Address = addr
	if err := in.Validate(); err != nil {
		return vo.RegisterInstanceParam{}, fmt.Errorf("nacos: register %s: %w", service, err)
	}
	host, portStr, _ := net.SplitHostPort(in.Address) // Validate checked it
	port, _ := strconv.ParseUint(portStr, 10, 16)
	weight := float64(max(in.Weight, 1))
	if weight > maxNacosWeight {
		return vo.RegisterInstanceParam{}, fmt.Errorf("nacos: register %s: weight %d over Nacos's limit of %d", service, in.Weight, maxNacosWeight)
	}
	return vo.RegisterInstanceParam{
		Ip:          host,
		Port:        port,
		Weight:      weight,
		Enable:      true,
		Healthy:     !in.Unhealthy,
		Metadata:    maps.Clone(in.Labels),
		ServiceName: service,
		GroupName:   group,
		Ephemeral:   true,
	}, nil
}

// deregisterParam is what deregisters the instance p registered.
func deregisterParam(p vo.RegisterInstanceParam) vo.DeregisterInstanceParam {
	return vo.DeregisterInstanceParam{Ip: p.Ip, Port: p.Port, ServiceName: p.ServiceName, GroupName: p.GroupName, Ephemeral: true}
}

// errRegisterRefused is a registration the server answered and refused.
// The SDK drops the server's reason.
var errRegisterRefused = errors.New("server refused")

// registerWith registers param through client of cfg; diag explains a
// refusal or a client not connected.
func registerWith(client naming_client.INamingClient, param vo.RegisterInstanceParam, cfg Config, diag *diagnosis) (*Registration, error) {
	ok, err := client.RegisterInstance(param)
	if err == nil && !ok {
		err = errRegisterRefused
	}
	addr := net.JoinHostPort(param.Ip, strconv.FormatUint(param.Port, 10))
	if err != nil {
		return nil, fmt.Errorf("nacos: register %s at %s in %s@%s: %w", param.ServiceName, addr, param.GroupName, cfg, diag.explain(context.Background(), err))
	}
	return &Registration{
		client: client,
		reg:    param,
	}, nil
}

// Address returns the address the instance is registered at, host
// included when Register found it.
func (r *Registration) Address() string {
	return net.JoinHostPort(r.reg.Ip, strconv.FormatUint(r.reg.Port, 10))
}

// Close deregisters the instance and, when Register made it, closes the
// naming client. Even when the deregistration fails, closing the
// connection removes the ephemeral instance once the server notices.
// The Close of a registration replaced by a later Discovery.Register of
// its service does nothing; that of one through a Discovery is told to
// the server again over the next 31 s (see Discovery.Register), since
// the SDK may register it again by itself. Later calls return the first
// call's result.
func (r *Registration) Close() error {
	r.once.Do(func() {
		if d := r.disc; d != nil {
			d.regMu.Lock()
			defer d.regMu.Unlock()
			if d.regs[r.reg.ServiceName] != r {
				return // replaced: deregistering would remove its successor
			}
			delete(d.regs, r.reg.ServiceName)
		}
		ok, err := r.client.DeregisterInstance(deregisterParam(r.reg))
		if err == nil && !ok {
			err = errors.New("server refused")
		}
		if d := r.disc; d != nil {
			d.reassert(r.reg) // the SDK may register it again from an earlier snapshot
		}
		if err != nil {
			r.err = fmt.Errorf("nacos: deregister %s at %s: %w", r.reg.ServiceName, r.Address(), err)
		}
		if r.owned {
			closeNamingClient(r.client)
			removeDir(r.dir)
		}
	})
	return r.err
}
