package v1beta1_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1beta1 "github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/apiservertest"
)

// row is one validation case: an object to create and, for a bad one, the
// field path and rule message the API server's error must name.
type row struct {
	name string
	obj  client.Object
	// path and msg are empty for objects the server must accept.
	path, msg string
}

// TestValidation creates good and bad objects of every kind against a real
// kube-apiserver with our CRDs and checks that the schema and CEL rules alone
// accept or reject them, naming the field.
func TestValidation(t *testing.T) {
	cfg := startWithCRDs(t)
	s := runtime.NewScheme()
	if err := v1beta1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []struct {
		name string
		rows []row
	}{
		{"IPAddressPool", poolRows()},
		{"L2Advertisement", l2Rows()},
		{"BGPAdvertisement", bgpAdvRows()},
		{"BGPPeer", peerRows()},
		{"Community", communityRows()},
	} {
		t.Run(kind.name, func(t *testing.T) {
			for i, r := range kind.rows {
				t.Run(r.name, func(t *testing.T) {
					r.obj.SetNamespace("default")
					r.obj.SetName(fmt.Sprintf("%s-%d", strings.ToLower(kind.name), i))
					err := c.Create(context.Background(), r.obj)
					if r.msg == "" {
						if err != nil {
							t.Fatalf("want accepted, got %v", err)
						}
						return
					}
					if err == nil {
						t.Fatalf("want rejected with %s: %s, got accepted", r.path, r.msg)
					}
					if !apierrors.IsInvalid(err) {
						t.Fatalf("want an Invalid error, got %v", err)
					}
					if !strings.Contains(err.Error(), r.path+":") || !strings.Contains(err.Error(), r.msg) {
						t.Fatalf("want error naming %q with %q, got %v", r.path, r.msg, err)
					}
				})
			}
		})
	}
}

// startWithCRDs starts an API server and installs, or updates to, the CRDs
// checked in under manifests/crds, whatever the harness installed: these
// tests are about exactly those files.
func startWithCRDs(t *testing.T) *rest.Config {
	t.Helper()
	cfg := apiservertest.Start(t)
	_, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		Paths:              []string{filepath.Join(apiservertest.Root(), "manifests", "crds")},
		ErrorIfPathMissing: true,
	})
	if err != nil {
		t.Fatalf("installing CRDs from manifests/crds: %v", err)
	}
	return cfg
}

const (
	msgAddress   = "must be a CIDR such as 192.168.10.0/24 or a range of two addresses"
	msgFamily    = "both ends of a range must be of the same IP family"
	msgOrder     = "the first address of a range must not be greater than the last"
	msgOperator  = "matchExpressions operator must be one of In, NotIn, Exists, DoesNotExist"
	msgNeedVals  = "matchExpressions with operator In or NotIn need values"
	msgNoVals    = "matchExpressions with operator Exists or DoesNotExist take no values"
	msgStdComm   = "a standard community's numbers must be 0 to 65535"
	msgLargeComm = "a large community's numbers must be 0 to 4294967295"
)

func pool(addrs ...string) *v1beta1.IPAddressPool {
	return &v1beta1.IPAddressPool{Spec: v1beta1.IPAddressPoolSpec{Addresses: addrs}}
}

// ranges returns n distinct IPv6 ranges, the most expensive entries to check.
func ranges(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("fd00:%x::1 - fd00:%x::ffff:ffff", i, i)
	}
	return out
}

func poolWith(sa v1beta1.ServiceAllocation) *v1beta1.IPAddressPool {
	p := pool("192.168.10.0/24")
	p.Spec.ServiceAllocation = &sa
	return p
}

func selector(exprs ...metav1.LabelSelectorRequirement) []metav1.LabelSelector {
	return []metav1.LabelSelector{{MatchExpressions: exprs}}
}

func req(op string, values ...string) metav1.LabelSelectorRequirement {
	return metav1.LabelSelectorRequirement{Key: "zone", Operator: metav1.LabelSelectorOperator(op), Values: values}
}

func poolRows() []row {
	tooMany := make([]metav1.LabelSelectorRequirement, 33)
	for i := range tooMany {
		tooMany[i] = req("Exists")
	}
	return []row{
		{name: "IPv4 CIDR", obj: pool("192.168.10.0/24")},
		{name: "IPv6 CIDR", obj: pool("fd00::/120")},
		{name: "CIDR with host bits", obj: pool("192.168.10.7/24")},
		{name: "single address CIDRs", obj: pool("10.0.0.1/32", "fd00::1/128")},
		{name: "IPv4 range", obj: pool("192.168.10.10-192.168.10.20")},
		{name: "IPv4 range with spaces", obj: pool("192.168.10.10 - 192.168.10.20")},
		{name: "IPv4 range of one address", obj: pool("10.0.0.5-10.0.0.5")},
		{name: "IPv4 range across an octet", obj: pool("9.255.255.255-10.0.0.0")},
		{name: "IPv4 range with longer last octet", obj: pool("10.0.0.9-10.0.0.10")},
		{name: "whole IPv4 space", obj: pool("0.0.0.0-255.255.255.255")},
		{name: "IPv6 range", obj: pool("fd00::1-fd00::ff")},
		{name: "IPv6 range across a group", obj: pool("fd00::ffff - fd00::1:0")},
		{name: "whole IPv6 space", obj: pool("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")},
		{name: "IPv6 range of one address", obj: pool("fd00::1-fd00:0::1")},
		{name: "IPv6 range of one odd address", obj: pool("fd00::1-fd00::1")},
		{name: "1024 IPv6 ranges, the most allowed", obj: pool(ranges(1024)...)},
		{name: "mixed entries", obj: pool("10.0.0.0/24", "fd00::/64", "10.1.0.1-10.1.0.9")},
		{name: "priority 0 and namespaces", obj: poolWith(v1beta1.ServiceAllocation{Priority: 0, Namespaces: []string{"a"}})},
		{name: "good selectors", obj: poolWith(v1beta1.ServiceAllocation{
			NamespaceSelectors: selector(req("In", "a"), req("NotIn", "b"), req("Exists"), req("DoesNotExist")),
			ServiceSelectors:   []metav1.LabelSelector{{MatchLabels: map[string]string{"app": "web"}}},
		})},

		{name: "no addresses", obj: pool(), path: "spec.addresses", msg: "Required value"},
		{name: "empty addresses", obj: pool([]string{}...), path: "spec.addresses", msg: "should have at least 1 items"},
		{name: "1025 entries", obj: pool(ranges(1025)...), path: "spec.addresses", msg: "must have at most 1024 items"},
		{name: "IPv4 prefix /33", obj: pool("10.0.0.0/33"), path: "spec.addresses[0]", msg: msgAddress},
		{name: "IPv6 prefix /129", obj: pool("fd00::/129"), path: "spec.addresses[0]", msg: msgAddress},
		{name: "not an address", obj: pool("10.0.0.0/24", "pool-a"), path: "spec.addresses[1]", msg: msgAddress},
		{name: "bare address", obj: pool("10.0.0.1"), path: "spec.addresses[0]", msg: msgAddress},
		{name: "range missing an end", obj: pool("10.0.0.1-"), path: "spec.addresses[0]", msg: msgAddress},
		{name: "range of three", obj: pool("10.0.0.1-10.0.0.2-10.0.0.3"), path: "spec.addresses[0]", msg: msgAddress},
		{name: "range of CIDRs", obj: pool("10.0.0.0/24-10.0.1.0/24"), path: "spec.addresses[0]", msg: msgAddress},
		{name: "mixed-family range", obj: pool("10.0.0.1-fd00::1"), path: "spec.addresses[0]", msg: msgFamily},
		{name: "IPv4 range reversed", obj: pool("192.168.10.20-192.168.10.10"), path: "spec.addresses[0]", msg: msgOrder},
		{name: "IPv4 range reversed across octets", obj: pool("10.0.0.10-10.0.0.9"), path: "spec.addresses[0]", msg: msgOrder},
		{name: "IPv4 range reversed in the last bit", obj: pool("10.0.0.1-10.0.0.0"), path: "spec.addresses[0]", msg: msgOrder},
		{name: "IPv6 range reversed", obj: pool("fd00::2-fd00::1"), path: "spec.addresses[0]", msg: msgOrder},
		{name: "IPv6 range reversed across groups", obj: pool("fd00::1:0 - fd00::ffff"), path: "spec.addresses[0]", msg: msgOrder},
		{name: "IPv6 range reversed in the first bit", obj: pool("8000::-7fff::"), path: "spec.addresses[0]", msg: msgOrder},
		{name: "whole IPv6 space reversed", obj: pool("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff-::"), path: "spec.addresses[0]", msg: msgOrder},
		{name: "negative priority", obj: poolWith(v1beta1.ServiceAllocation{Priority: -1}), path: "spec.serviceAllocation.priority", msg: "greater than or equal to 0"},
		{name: "empty namespace", obj: poolWith(v1beta1.ServiceAllocation{Namespaces: []string{"a", ""}}), path: "spec.serviceAllocation.namespaces[1]", msg: "at least 1 chars long"},
		{name: "bad selector operator", obj: poolWith(v1beta1.ServiceAllocation{ServiceSelectors: selector(req("Equals", "a"))}), path: "spec.serviceAllocation.serviceSelectors[0].matchExpressions", msg: msgOperator},
		{name: "In without values", obj: poolWith(v1beta1.ServiceAllocation{NamespaceSelectors: selector(req("In"))}), path: "spec.serviceAllocation.namespaceSelectors[0].matchExpressions", msg: msgNeedVals},
		{name: "Exists with values", obj: poolWith(v1beta1.ServiceAllocation{NamespaceSelectors: selector(req("Exists", "a"))}), path: "spec.serviceAllocation.namespaceSelectors[0].matchExpressions", msg: msgNoVals},
		{name: "too many matchExpressions", obj: poolWith(v1beta1.ServiceAllocation{NamespaceSelectors: selector(tooMany...)}), path: "spec.serviceAllocation.namespaceSelectors[0].matchExpressions", msg: "at most 32 matchExpressions are allowed"},
	}
}

func l2(spec v1beta1.L2AdvertisementSpec) *v1beta1.L2Advertisement {
	return &v1beta1.L2Advertisement{Spec: spec}
}

func l2Rows() []row {
	return []row{
		{name: "empty spec", obj: l2(v1beta1.L2AdvertisementSpec{})},
		{name: "interfaces and selectors", obj: l2(v1beta1.L2AdvertisementSpec{
			Interfaces:             []string{"eth0", "enp0s31f6", "bond0.100", "fifteen-chars-x"},
			NodeSelectors:          selector(req("In", "a", "b")),
			IPAddressPoolSelectors: selector(req("DoesNotExist")),
		})},

		{name: "empty interface", obj: l2(v1beta1.L2AdvertisementSpec{Interfaces: []string{"eth0", ""}}), path: "spec.interfaces[1]", msg: "at least 1 chars long"},
		{name: "interface of 16 bytes", obj: l2(v1beta1.L2AdvertisementSpec{Interfaces: []string{"sixteen-chars-xx"}}), path: "spec.interfaces[0]", msg: "may not be more than 15 bytes"},
		{name: "interface with slash", obj: l2(v1beta1.L2AdvertisementSpec{Interfaces: []string{"eth/0"}}), path: "spec.interfaces[0]", msg: "should match"},
		{name: "interface dot", obj: l2(v1beta1.L2AdvertisementSpec{Interfaces: []string{"."}}), path: "spec.interfaces[0]", msg: "must not be . or .."},
		{name: "bad node selector operator", obj: l2(v1beta1.L2AdvertisementSpec{NodeSelectors: selector(req("Exists"), req("in", "a"))}), path: "spec.nodeSelectors[0].matchExpressions", msg: msgOperator},
		{name: "pool selector NotIn without values", obj: l2(v1beta1.L2AdvertisementSpec{IPAddressPoolSelectors: selector(req("NotIn"))}), path: "spec.ipAddressPoolSelectors[0].matchExpressions", msg: msgNeedVals},
	}
}

func bgpAdv(spec v1beta1.BGPAdvertisementSpec) *v1beta1.BGPAdvertisement {
	return &v1beta1.BGPAdvertisement{Spec: spec}
}

func ptr[T any](v T) *T { return &v }

func bgpAdvRows() []row {
	return []row{
		{name: "defaults", obj: bgpAdv(v1beta1.BGPAdvertisementSpec{})},
		{name: "full", obj: bgpAdv(v1beta1.BGPAdvertisementSpec{
			AggregationLength:   ptr(int32(24)),
			AggregationLengthV6: ptr(int32(64)),
			LocalPref:           4294967295,
			Communities:         []string{"65535:65282", "0:0", "7003:007", "large:4294967295:0:1", "no-export-a", "7"},
			NodeSelectors:       selector(req("In", "a")),
		})},
		{name: "aggregation lengths at the edges", obj: bgpAdv(v1beta1.BGPAdvertisementSpec{AggregationLength: ptr(int32(1)), AggregationLengthV6: ptr(int32(0))})},
		{name: "aggregation lengths at the top", obj: bgpAdv(v1beta1.BGPAdvertisementSpec{AggregationLength: ptr(int32(32)), AggregationLengthV6: ptr(int32(128))})},

		{name: "aggregationLength 0", obj: bgpAdv(v1beta1.BGPAdvertisementSpec{AggregationLength: ptr(int32(0))}), path: "spec.aggregationLength", msg: "greater than or equal to 1"},
		{name: "aggregationLength 33", obj: bgpAdv(v1beta1.BGPAdvertisementSpec{AggregationLength: ptr(int32(33))}), path: "spec.aggregationLength", msg: "less than or equal to 32"},
		{name: "aggregationLengthV6 129", obj: bgpAdv(v1beta1.BGPAdvertisementSpec{AggregationLengthV6: ptr(int32(129))}), path: "spec.aggregationLengthV6", msg: "less than or equal to 128"},
		{name: "aggregationLengthV6 -1", obj: bgpAdv(v1beta1.BGPAdvertisementSpec{AggregationLengthV6: ptr(int32(-1))}), path: "spec.aggregationLengthV6", msg: "greater than or equal to 0"},
		{name: "standard community out of range", obj: bgpAdv(v1beta1.BGPAdvertisementSpec{Communities: []string{"65535:1", "65536:1"}}), path: "spec.communities[1]", msg: msgStdComm},
		{name: "community of three numbers", obj: bgpAdv(v1beta1.BGPAdvertisementSpec{Communities: []string{"1:2:3"}}), path: "spec.communities[0]", msg: "must be a standard community A:B, a large community large:A:B:C, or the name of a Community alias"},
		{name: "large community out of range", obj: bgpAdv(v1beta1.BGPAdvertisementSpec{Communities: []string{"large:1:2:4294967296"}}), path: "spec.communities[0]", msg: msgLargeComm},
		{name: "large community of two numbers", obj: bgpAdv(v1beta1.BGPAdvertisementSpec{Communities: []string{"large:1:2"}}), path: "spec.communities[0]", msg: "must be a standard community"},
		{name: "alias name with capitals", obj: bgpAdv(v1beta1.BGPAdvertisementSpec{Communities: []string{"NO_EXPORT"}}), path: "spec.communities[0]", msg: "must be a standard community"},
		{name: "bad node selector operator", obj: bgpAdv(v1beta1.BGPAdvertisementSpec{NodeSelectors: selector(req("Equals", "a"))}), path: "spec.nodeSelectors[0].matchExpressions", msg: msgOperator},
		{name: "pool selector DoesNotExist with values", obj: bgpAdv(v1beta1.BGPAdvertisementSpec{IPAddressPoolSelectors: selector(req("DoesNotExist", "a"))}), path: "spec.ipAddressPoolSelectors[0].matchExpressions", msg: msgNoVals},
	}
}

func peer(edit func(*v1beta1.BGPPeerSpec)) *v1beta1.BGPPeer {
	p := &v1beta1.BGPPeer{Spec: v1beta1.BGPPeerSpec{MyASN: 64512, PeerASN: 64513, PeerAddress: "192.0.2.1"}}
	if edit != nil {
		edit(&p.Spec)
	}
	return p
}

// rawPeer is a BGPPeer as a client that is not Go would send it, for values
// the Go types cannot hold or always omit.
func rawPeer(spec map[string]any) *unstructured.Unstructured {
	full := map[string]any{"myASN": int64(64512), "peerASN": int64(64513), "peerAddress": "192.0.2.1"}
	for k, v := range spec {
		full[k] = v
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": full}}
	u.SetGroupVersionKind(v1beta1.GroupVersion.WithKind("BGPPeer"))
	return u
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func peerRows() []row {
	return []row{
		{name: "minimal", obj: peer(nil)},
		{name: "dynamic ASN", obj: peer(func(s *v1beta1.BGPPeerSpec) { s.PeerASN = 0; s.DynamicASN = v1beta1.ExternalASNMode })},
		{name: "full IPv6", obj: peer(func(s *v1beta1.BGPPeerSpec) {
			s.MyASN, s.PeerASN = 4294967295, 1
			s.PeerAddress, s.SourceAddress, s.RouterID = "2001:db8::1", "2001:db8::2", "10.0.0.1"
			s.PeerPort = 65535
			s.HoldTime, s.KeepaliveTime, s.ConnectTime = dur(90*time.Second), dur(30*time.Second), dur(10*time.Second)
			s.PasswordSecret = corev1.SecretReference{Name: "bgp"}
			s.NodeSelectors = selector(req("In", "rack-1"))
		})},
		{name: "hold time 0", obj: peer(func(s *v1beta1.BGPPeerSpec) { s.HoldTime = dur(0) })},
		{name: "hold time 3s", obj: peer(func(s *v1beta1.BGPPeerSpec) { s.HoldTime = dur(3 * time.Second) })},
		{name: "password alone", obj: peer(func(s *v1beta1.BGPPeerSpec) { s.Password = "secret" })},
		{name: "hold time as a user writes it", obj: rawPeer(map[string]any{"holdTime": "1m30s", "keepaliveTime": "1.5s"})},

		{name: "myASN 0", obj: peer(func(s *v1beta1.BGPPeerSpec) { s.MyASN = 0 }), path: "spec.myASN", msg: "greater than or equal to 1"},
		{name: "myASN too big", obj: rawPeer(map[string]any{"myASN": int64(4294967296)}), path: "spec.myASN", msg: "less than or equal to 4294967295"},
		{name: "peerASN 0 sent", obj: rawPeer(map[string]any{"peerASN": int64(0)}), path: "spec.peerASN", msg: "greater than or equal to 1"},
		{name: "both peerASN and dynamicASN", obj: peer(func(s *v1beta1.BGPPeerSpec) { s.DynamicASN = v1beta1.InternalASNMode }), path: "spec", msg: "exactly one of peerASN and dynamicASN must be set"},
		{name: "neither peerASN nor dynamicASN", obj: peer(func(s *v1beta1.BGPPeerSpec) { s.PeerASN = 0 }), path: "spec", msg: "exactly one of peerASN and dynamicASN must be set"},
		{name: "bad dynamicASN", obj: peer(func(s *v1beta1.BGPPeerSpec) { s.PeerASN = 0; s.DynamicASN = "auto" }), path: "spec.dynamicASN", msg: "Unsupported value"},
		{name: "peerAddress not an IP", obj: peer(func(s *v1beta1.BGPPeerSpec) { s.PeerAddress = "router.example" }), path: "spec.peerAddress", msg: "must be a valid IP address"},
		{name: "peerAddress missing", obj: rawPeer(map[string]any{"peerAddress": nil}), path: "spec.peerAddress", msg: "Required value"},
		{name: "sourceAddress not an IP", obj: peer(func(s *v1beta1.BGPPeerSpec) { s.SourceAddress = "10.0.0.256" }), path: "spec.sourceAddress", msg: "must be a valid IP address"},
		{name: "routerID IPv6", obj: peer(func(s *v1beta1.BGPPeerSpec) { s.RouterID = "fd00::1" }), path: "spec.routerID", msg: "must be an IPv4 address"},
		{name: "peerPort 0", obj: rawPeer(map[string]any{"peerPort": int64(0)}), path: "spec.peerPort", msg: "greater than or equal to 1"},
		{name: "peerPort 65536", obj: rawPeer(map[string]any{"peerPort": int64(65536)}), path: "spec.peerPort", msg: "less than or equal to 65535"},
		{name: "hold time 2s", obj: peer(func(s *v1beta1.BGPPeerSpec) { s.HoldTime = dur(2 * time.Second) }), path: "spec.holdTime", msg: "must be 0 or at least 3s"},
		{name: "hold time not a duration", obj: rawPeer(map[string]any{"holdTime": "3 days"}), path: "spec.holdTime", msg: "must be a duration such as 90s or 1m30s"},
		{name: "keepalive equal to hold time", obj: peer(func(s *v1beta1.BGPPeerSpec) { s.HoldTime, s.KeepaliveTime = dur(30*time.Second), dur(30*time.Second) }), path: "spec.keepaliveTime", msg: "keepaliveTime must be less than holdTime"},
		{name: "keepalive above hold time", obj: rawPeer(map[string]any{"holdTime": "90s", "keepaliveTime": "2m"}), path: "spec.keepaliveTime", msg: "keepaliveTime must be less than holdTime"},
		{name: "password and passwordSecret", obj: peer(func(s *v1beta1.BGPPeerSpec) {
			s.Password = "secret"
			s.PasswordSecret = corev1.SecretReference{Name: "bgp"}
		}), path: "spec.password", msg: "password and passwordSecret are mutually exclusive"},
		{name: "bad node selector operator", obj: peer(func(s *v1beta1.BGPPeerSpec) { s.NodeSelectors = selector(req("Has")) }), path: "spec.nodeSelectors[0].matchExpressions", msg: msgOperator},
	}
}

func community(aliases ...v1beta1.CommunityAlias) *v1beta1.Community {
	return &v1beta1.Community{Spec: v1beta1.CommunitySpec{Communities: aliases}}
}

func alias(name, value string) v1beta1.CommunityAlias {
	return v1beta1.CommunityAlias{Name: name, Value: value}
}

func communityRows() []row {
	return []row{
		{name: "standard and large", obj: community(alias("no-advertise", "65535:65282"), alias("vpn", "large:64512:1:4294967295"))},
		{name: "empty", obj: community()},

		{name: "standard out of range", obj: community(alias("a", "1:65536")), path: "spec.communities[0].value", msg: msgStdComm},
		{name: "large out of range", obj: community(alias("a", "large:4294967296:1:1")), path: "spec.communities[0].value", msg: msgLargeComm},
		{name: "value is a name", obj: community(alias("a", "no-export")), path: "spec.communities[0].value", msg: "must be a standard community A:B or a large community large:A:B:C"},
		{name: "empty name", obj: community(alias("", "1:1")), path: "spec.communities[0].name", msg: "at least 1 chars long"},
		{name: "name not a label", obj: community(alias("No Export", "1:1")), path: "spec.communities[0].name", msg: "should match"},
		{name: "duplicate names", obj: community(alias("a", "1:1"), alias("a", "1:2")), path: "spec.communities[1]", msg: "Duplicate value"},
	}
}
