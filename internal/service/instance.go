package service

import (
	"context"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Instances is the server's view of the instances sharing its database.
type Instances interface {
	Instances(ctx context.Context) ([]ipa.Instance, error)
	// DrainInstance marks instance id ("" for this one) to hand its pods
	// over and returns its id; ENOTFOUND for an unknown instance.
	DrainInstance(ctx context.Context, id string) (string, error)
}

// InstanceService lists instances and drains them.
type InstanceService struct {
	inst Instances
}

// NewInstanceService returns an InstanceService over inst.
func NewInstanceService(inst Instances) *InstanceService { return &InstanceService{inst: inst} }

// List returns every instance, oldest first. Requires VIEWER.
func (s *InstanceService) List(ctx context.Context) ([]ipa.Instance, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	return s.inst.Instances(ctx)
}

// Drain asks the instance (this one when id is nil) to hand its pods to the
// other live instances. Requires ADMIN. Returns ENOTFOUND for an unknown
// instance.
func (s *InstanceService) Drain(ctx context.Context, id *string) (string, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleAdmin); err != nil {
		return "", err
	}
	want := ""
	if id != nil {
		want = *id
	}
	return s.inst.DrainInstance(ctx, want)
}
