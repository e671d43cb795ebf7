package mesh

import "github.com/lightmesh/lightmesh/router"

// Authorizer returns the authorization of the calls service receives in
// the rules in force (its authorization section, composed as explain
// shows it), or nil, meaning every caller may call, when it has none.
// identity.NewGuard enforces it: a rejected document never changes it,
// and an applied one decides the next request.
func (m *Mesh) Authorizer(service string) *router.Authorizer {
	st := m.eng.Load()
	if st == nil || st.Table() == nil {
		return nil
	}
	return st.Table().Rules().Authorizer(service)
}
