package nacos

import (
	"context"
	"errors"
	"reflect"

	"github.com/nacos-group/nacos-sdk-go/v2/clients/config_client"
	"github.com/nacos-group/nacos-sdk-go/v2/common/constant"
	"github.com/nacos-group/nacos-sdk-go/v2/common/remote/rpc"
	"github.com/nacos-group/nacos-sdk-go/v2/common/remote/rpc/rpc_request"
	"github.com/nacos-group/nacos-sdk-go/v2/common/remote/rpc/rpc_response"
)

// hearPushes makes the config-change pushes the server sends to client's
// connection call onPush, instead of the SDK's own handler.
//
// Why: nacos-sdk-go (v2.3.2 to v2.3.5, the newest) can lose a push. Its
// handler marks the item out of sync and starts a listen round, but a
// listen round already in flight, whose answer predates the change, then
// marks every item it was not told about in sync again, and the listener
// is never called (ConfigClient.executeConfigListen; two items edited at
// the same moment lose one edit in three). The catalog only needs to
// know that an item changed: it reads the item itself, one read at a
// time, so the latest content wins. The SDK's listener stays registered,
// since its listen rounds are what tells the server to push to this
// connection, and it still calls the catalog on its 5-minute full sync.
//
// The handler belongs to this one client's connection, so other SDK
// clients in the process, created before or after, and whatever logger
// the program installs in the SDK, change nothing. The SDK offers no
// accessor for a client's connection: it is found by the name the SDK
// gives it ("config-0-" and the client's uid, a field read by
// reflection). It must be called after a request of client succeeded,
// when that connection exists; otherwise rpc.CreateClient would make an
// empty one under that name. The SDK's listener is then no longer called
// on pushes, only on the SDK's own listen rounds.
func hearPushes(client config_client.IConfigClient, onPush func(dataID, group, tenant string)) error {
	cc, ok := client.(*config_client.ConfigClient)
	if !ok {
		return errors.New("not the SDK's config client")
	}
	uid := reflect.ValueOf(cc).Elem().FieldByName("uid")
	if !uid.IsValid() || uid.Kind() != reflect.String || uid.String() == "" {
		return errors.New("the SDK's config client has no uid field (nacos-sdk-go changed)")
	}
	rc, err := rpc.CreateClient(context.Background(), "config-0-"+uid.String(), rpc.GRPC, nil, nil, nil, nil)
	if err != nil {
		return err
	}
	conn := rc.GetRpcClient()
	if conn.IsInitialized() {
		// Not the SDK's connection but a new one made just now: never
		// started, it does nothing; the SDK would find and start it.
		conn.Shutdown()
		return errors.New("the SDK's config connection does not exist yet")
	}
	conn.RegisterServerRequestHandler(func() rpc_request.IRequest {
		return rpc_request.NewConfigChangeNotifyRequest("", "", "")
	}, pushHandler(onPush))
	return nil
}

// pushHandler answers the server's config-change pushes on one
// connection.
type pushHandler func(dataID, group, tenant string)

var _ rpc.IServerRequestHandler = pushHandler(nil)

// Name implements rpc.IServerRequestHandler.
func (h pushHandler) Name() string { return "lightmesh.ConfigChangeNotifyRequestHandler" }

// RequestReply implements rpc.IServerRequestHandler: it hands the
// pushed item to the catalog, which reads it on a goroutine of its own,
// and acknowledges the push.
func (h pushHandler) RequestReply(request rpc_request.IRequest, _ *rpc.RpcClient) rpc_response.IResponse {
	req, ok := request.(*rpc_request.ConfigChangeNotifyRequest)
	if !ok {
		return nil
	}
	h(req.DataId, req.Group, req.Tenant)
	return &rpc_response.NotifySubscriberResponse{
		Response: &rpc_response.Response{ResultCode: constant.RESPONSE_CODE_SUCCESS},
	}
}
