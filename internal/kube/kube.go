// Package kube reaches the API server with typed clients, informers and an
// Event recorder for only the API types a process registers.
//
// client-go's clientset and controller-runtime both link every built-in
// API group and register all of them when the process starts. A node agent
// that reads six kinds pays for that in memory on every node: about 15 MB
// of a speaker's resident set were code and type data it never used.
package kube

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/gentype"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
)

// Object is what a typed client handles: a Kubernetes object with
// metadata.
type Object interface {
	runtime.Object
	metav1.Object
}

// Client holds one REST client per API group version, sharing one HTTP
// client and one rate limiter, so that the process keeps the QPS it was
// configured with however many groups it reads.
type Client struct {
	scheme *runtime.Scheme
	codecs serializer.CodecFactory
	params runtime.ParameterCodec
	rests  map[schema.GroupVersion]rest.Interface
}

// New returns a client for the types the adders register.
func New(cfg *rest.Config, adders ...func(*runtime.Scheme) error) (*Client, error) {
	scheme := runtime.NewScheme()
	for _, add := range adders {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("kube: registering API types: %w", err)
		}
	}
	// Lists, options and Status for every group version, as the clientset
	// registers them.
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	base := rest.CopyConfig(cfg)
	if base.RateLimiter == nil && base.QPS > 0 {
		base.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(base.QPS, base.Burst)
	}
	httpClient, err := rest.HTTPClientFor(base)
	if err != nil {
		return nil, fmt.Errorf("kube: http client for %s: %w", cfg.Host, err)
	}
	c := &Client{
		scheme: scheme,
		codecs: serializer.NewCodecFactory(scheme),
		params: runtime.NewParameterCodec(scheme),
		rests:  map[schema.GroupVersion]rest.Interface{},
	}
	for gvk := range scheme.AllKnownTypes() {
		gv := gvk.GroupVersion()
		if _, done := c.rests[gv]; done || gv.Version == runtime.APIVersionInternal {
			continue
		}
		rc, err := c.restFor(base, httpClient, gv)
		if err != nil {
			return nil, err
		}
		c.rests[gv] = rc
	}
	return c, nil
}

func (c *Client) restFor(base *rest.Config, httpClient *http.Client, gv schema.GroupVersion) (rest.Interface, error) {
	cfg := rest.CopyConfig(base)
	cfg.GroupVersion = &gv
	cfg.APIPath = "/apis"
	if gv.Group == "" {
		cfg.APIPath = "/api"
	}
	// Built-in types travel as protobuf, which is smaller on the wire and
	// cheaper to decode; custom resources only speak JSON.
	if gv.Group == "" || !strings.Contains(gv.Group, ".") || strings.HasSuffix(gv.Group, ".k8s.io") {
		cfg.ContentType = runtime.ContentTypeProtobuf
		cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	}
	cfg.NegotiatedSerializer = c.codecs.WithoutConversion()
	rc, err := rest.RESTClientForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("kube: client for %s: %w", gv, err)
	}
	return rc, nil
}

// Scheme is the client's scheme: the types New registered.
func (c *Client) Scheme() *runtime.Scheme { return c.scheme }

// Resource is a typed client for one resource in one namespace ("" for a
// cluster-scoped resource, or for all namespaces).
type Resource[T Object, L runtime.Object] struct {
	*gentype.ClientWithList[T, L]
	newObj func() T
}

// For returns the typed client for resource (the plural in URLs,
// "services") of V, listed as LV, in namespace:
//
//	kube.For[corev1.Service, corev1.ServiceList](c, "services", "")
//
// V must be registered with c; For panics if not, as that is a mistake
// in the program, not in its input.
func For[V, LV any, T interface {
	*V
	Object
}, L interface {
	*LV
	runtime.Object
}](c *Client, resource, namespace string) Resource[T, L] {
	newObj := func() T { return T(new(V)) }
	kinds, _, err := c.scheme.ObjectKinds(newObj())
	if err != nil {
		panic(fmt.Sprintf("kube: client for %s: %v", resource, err))
	}
	rc := c.rests[kinds[0].GroupVersion()]
	return Resource[T, L]{gentype.NewClientWithList(resource, rc, c.params, namespace, newObj, func() L { return L(new(LV)) }), newObj}
}

// Informer returns an informer over r's objects that match selector (""
// for all). Objects enter the cache without managedFields, which nothing
// here reads and which are a large share of every object, and then
// through transform (nil for none).
func (r Resource[T, L]) Informer(selector string, transform cache.TransformFunc) cache.SharedIndexInformer {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.LabelSelector = selector
			return r.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.LabelSelector = selector
			return r.Watch(ctx, opts)
		},
	}
	inf := cache.NewSharedIndexInformer(lw, r.newObj(), 0, cache.Indexers{})
	if err := inf.SetTransform(func(obj any) (any, error) {
		if o, ok := obj.(metav1.Object); ok {
			o.SetManagedFields(nil)
		}
		if transform != nil {
			return transform(obj)
		}
		return obj, nil
	}); err != nil {
		// Only possible once the informer runs, and this one does not yet.
		panic(err)
	}
	return inf
}

// Items returns an informer's cached objects as values: shallow copies
// that share everything they point to with the cache. Read them, never
// change them.
func Items[V any](inf cache.SharedIndexInformer) []V {
	objs := inf.GetStore().List()
	out := make([]V, 0, len(objs))
	for _, o := range objs {
		out = append(out, *o.(*V))
	}
	return out
}

// Recorder returns an Event recorder for component on host, and a
// function that flushes and stops it. Events are core/v1 Events, which
// clients of events.k8s.io/v1 read too; the recorder aggregates repeats.
func (c *Client) Recorder(component, host string) (record.EventRecorder, func()) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(eventSink{c})
	return b.NewRecorder(c.scheme, corev1.EventSource{Component: component, Host: host}), b.Shutdown
}

// eventSink writes Events into their own namespace.
type eventSink struct{ c *Client }

func (s eventSink) events(ns string) Resource[*corev1.Event, *corev1.EventList] {
	return For[corev1.Event, corev1.EventList](s.c, "events", ns)
}

func (s eventSink) Create(e *corev1.Event) (*corev1.Event, error) {
	return s.events(e.Namespace).Create(context.Background(), e, metav1.CreateOptions{})
}

func (s eventSink) Update(e *corev1.Event) (*corev1.Event, error) {
	return s.events(e.Namespace).Update(context.Background(), e, metav1.UpdateOptions{})
}

func (s eventSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	return s.events(e.Namespace).Patch(context.Background(), e.Name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
}
