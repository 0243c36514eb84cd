package controller

import (
	"fmt"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/allocator"
	"github.com/ironlb/ironlb/internal/pool"
)

// parsePools turns the pool objects into allocator pools. A pool the API
// server let through but that still cannot be used (its schema predates a
// rule, say) is left out and its error returned by name, so one bad pool
// never stops the others.
func parsePools(objs []v1beta1.IPAddressPool) ([]allocator.Pool, map[string]error) {
	sort.Slice(objs, func(i, j int) bool { return objs[i].Name < objs[j].Name })
	pools := make([]allocator.Pool, 0, len(objs))
	bad := map[string]error{}
	for i := range objs {
		p, err := parsePool(&objs[i])
		if err != nil {
			bad[objs[i].Name] = err
			continue
		}
		pools = append(pools, p)
	}
	return pools, bad
}

func parsePool(obj *v1beta1.IPAddressPool) (allocator.Pool, error) {
	ranges, err := pool.ParseAll(obj.Spec.Addresses)
	if err != nil {
		return allocator.Pool{}, fmt.Errorf("spec.addresses: %w", err)
	}
	p := allocator.Pool{
		Name:          obj.Name,
		Ranges:        ranges,
		AutoAssign:    obj.Spec.AutoAssign == nil || *obj.Spec.AutoAssign,
		AvoidBuggyIPs: obj.Spec.AvoidBuggyIPs,
	}
	if sa := obj.Spec.ServiceAllocation; sa != nil {
		p.Priority = sa.Priority
		p.Namespaces = sa.Namespaces
		if p.NamespaceSelectors, err = selectors(sa.NamespaceSelectors); err != nil {
			return allocator.Pool{}, fmt.Errorf("spec.serviceAllocation.namespaceSelectors: %w", err)
		}
		if p.ServiceSelectors, err = selectors(sa.ServiceSelectors); err != nil {
			return allocator.Pool{}, fmt.Errorf("spec.serviceAllocation.serviceSelectors: %w", err)
		}
	}
	return p, nil
}

func selectors(in []metav1.LabelSelector) ([]labels.Selector, error) {
	out := make([]labels.Selector, 0, len(in))
	for i := range in {
		s, err := metav1.LabelSelectorAsSelector(&in[i])
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		out = append(out, s)
	}
	return out, nil
}
