package nacos

import (
	"sync"

	"github.com/nacos-group/nacos-sdk-go/v2/clients"
	"github.com/nacos-group/nacos-sdk-go/v2/clients/config_client"
	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
)

// sdkConns guards nacos-sdk-go's process-wide map of connections
// (rpc.clientMap). The SDK reads and writes it under its own lock when
// a client is created and on every config request, but v2.3.5 deletes
// from it without that lock when a client is closed
// (RpcClient.Shutdown; nacos-group/nacos-sdk-go#861, fixed upstream in
// #862 after v2.3.5), which is a data race and can end the process with
// "concurrent map read and map write". Every call of this package that
// reaches the map takes sdkConns: closing a client exclusively, the
// others shared. It is the one process-wide variable of the package
// because the state it guards is the SDK's, and it is process-wide; it
// cannot guard the SDK clients a program makes itself, nor the SDK's
// own listen rounds, which run on its goroutines (rare: only while an
// item is out of sync, and every 5 minutes).
var sdkConns sync.RWMutex

// configClient is an SDK config client whose calls take sdkConns.
type configClient struct {
	sdk config_client.IConfigClient
}

// newConfigClient creates an SDK config client and installs cfg's logger
// in the SDK.
func newConfigClient(cfg Config, param vo.NacosClientParam) (*configClient, error) {
	sdkConns.RLock()
	c, err := clients.NewConfigClient(param)
	sdkConns.RUnlock()
	installLogger(cfg)
	if err != nil {
		return nil, err
	}
	return &configClient{sdk: c}, nil
}

func (c *configClient) get(dataID, group string) (string, error) {
	sdkConns.RLock()
	defer sdkConns.RUnlock()
	return c.sdk.GetConfig(vo.ConfigParam{DataId: dataID, Group: group})
}

func (c *configClient) publish(p vo.ConfigParam) (bool, error) {
	sdkConns.RLock()
	defer sdkConns.RUnlock()
	return c.sdk.PublishConfig(p)
}

func (c *configClient) remove(dataID, group string) (bool, error) {
	sdkConns.RLock()
	defer sdkConns.RUnlock()
	return c.sdk.DeleteConfig(vo.ConfigParam{DataId: dataID, Group: group})
}

// hearPushes is the package's hearPushes for this client. It holds
// sdkConns exclusively: when the connection it looks for does not exist,
// it removes the one it made, which deletes from the SDK's map.
func (c *configClient) hearPushes(onPush func(dataID, group, tenant string)) error {
	sdkConns.Lock()
	defer sdkConns.Unlock()
	return hearPushes(c.sdk, onPush)
}

func (c *configClient) close() {
	sdkConns.Lock()
	defer sdkConns.Unlock()
	c.sdk.CloseClient()
}

// newSDKNamingClient creates an SDK naming client under sdkConns.
func newSDKNamingClient(param vo.NacosClientParam) (naming_client.INamingClient, error) {
	sdkConns.RLock()
	defer sdkConns.RUnlock()
	return clients.NewNamingClient(param)
}

// closeNamingClient closes an SDK naming client under sdkConns.
func closeNamingClient(c naming_client.INamingClient) {
	sdkConns.Lock()
	defer sdkConns.Unlock()
	c.CloseClient()
}
