package nacos

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"
	"sync"

	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/lightmesh/lightmesh/discovery"
)

// maxNacosWeight is the largest weight Nacos accepts.
const maxNacosWeight = 10000

// Registration keeps one instance registered in Nacos naming. Use
// Register; call Close to deregister.
//
// The instance is ephemeral: it lives as long as the registration's
// connection, so a process that dies without Close disappears as soon as
// the server notices the connection is gone, and the SDK registers it
// again by itself after a reconnect.
type Registration struct {
	client naming_client.INamingClient
	param  vo.DeregisterInstanceParam
	dir    string
	once   sync.Once
	err    error
}

// Register registers in as an instance of service in group (DefaultGroup
// when empty), with its own naming client. Labels become the instance's
// metadata; the Nacos weight is in.Weight (1 when zero), so Discovery
// reads it back as in.Weight×100; Unhealthy registers it unhealthy.
func Register(cfg Config, service, group string, in discovery.Instance) (*Registration, error) {
	if service == "" {
		return nil, errors.New("nacos: register: empty service name")
	}
	if group == "" {
		group = DefaultGroup
	}
	if err := in.Validate(); err != nil {
		return nil, fmt.Errorf("nacos: register %s: %w", service, err)
	}
	host, portStr, _ := net.SplitHostPort(in.Address) // Validate checked it
	port, _ := strconv.ParseUint(portStr, 10, 16)
	weight := float64(max(in.Weight, 1))
	if weight > maxNacosWeight {
		return nil, fmt.Errorf("nacos: register %s: weight %d over Nacos's limit of %d", service, in.Weight, maxNacosWeight)
	}
	client, dir, err := newNamingClient(cfg)
	if err != nil {
		return nil, err
	}
	ok, err := client.RegisterInstance(vo.RegisterInstanceParam{
		Ip:          host,
		Port:        port,
		Weight:      weight,
		Enable:      true,
		Healthy:     !in.Unhealthy,
		Metadata:    maps.Clone(in.Labels),
		ServiceName: service,
		GroupName:   group,
		Ephemeral:   true,
	})
	if err == nil && !ok {
		err = errors.New("server refused")
	}
	if err != nil {
		closeNamingClient(client)
		removeDir(dir)
		return nil, fmt.Errorf("nacos: register %s at %s in %s@%s: %w", service, in.Address, group, cfg, err)
	}
	return &Registration{
		client: client,
		param:  vo.DeregisterInstanceParam{Ip: host, Port: port, ServiceName: service, GroupName: group, Ephemeral: true},
		dir:    dir,
	}, nil
}

// Close deregisters the instance and closes the client. Even when the
// deregistration fails, closing the connection removes the ephemeral
// instance once the server notices. Later calls return the first
// call's result.
func (r *Registration) Close() error {
	r.once.Do(func() {
		ok, err := r.client.DeregisterInstance(r.param)
		if err == nil && !ok {
			err = errors.New("server refused")
		}
		if err != nil {
			r.err = fmt.Errorf("nacos: deregister %s at %s: %w", r.param.ServiceName, net.JoinHostPort(r.param.Ip, strconv.FormatUint(r.param.Port, 10)), err)
		}
		closeNamingClient(r.client)
		removeDir(r.dir)
	})
	return r.err
}
