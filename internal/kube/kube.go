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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
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
	rc        rest.Interface
	params    runtime.ParameterCodec
	resource  string
	namespace string
	newObj    func() T
	newList   func() L
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
	return Resource[T, L]{
		rc: c.rests[kinds[0].GroupVersion()], params: c.params, resource: resource, namespace: namespace,
		newObj: newObj, newList: func() L { return L(new(LV)) },
	}
}

// request starts a request for the resource (and subresources), in the
// namespace when there is one.
func (r Resource[T, L]) request(verb string, subresources ...string) *rest.Request {
	return r.rc.Verb(verb).NamespaceIfScoped(r.namespace, r.namespace != "").Resource(r.resource).SubResource(subresources...)
}

// into runs req and decodes what the API server returned into a new T.
func (r Resource[T, L]) into(ctx context.Context, req *rest.Request) (T, error) {
	out := r.newObj()
	if err := req.Do(ctx).Into(out); err != nil {
		return *new(T), err
	}
	return out, nil
}

// Get reads the object called name.
func (r Resource[T, L]) Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error) {
	return r.into(ctx, r.request("GET").Name(name).VersionedParams(&opts, r.params))
}

// List lists the objects opts selects.
func (r Resource[T, L]) List(ctx context.Context, opts metav1.ListOptions) (L, error) {
	out := r.newList()
	if err := r.request("GET").VersionedParams(&opts, r.params).Do(ctx).Into(out); err != nil {
		return *new(L), err
	}
	return out, nil
}

// Watch watches the objects opts selects.
func (r Resource[T, L]) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return r.request("GET").VersionedParams(&opts, r.params).Watch(ctx)
}

// Create creates obj.
func (r Resource[T, L]) Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error) {
	return r.into(ctx, r.request("POST").VersionedParams(&opts, r.params).Body(obj))
}

// Update replaces obj, at its resource version.
func (r Resource[T, L]) Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error) {
	return r.into(ctx, r.request("PUT").Name(obj.GetName()).VersionedParams(&opts, r.params).Body(obj))
}

// UpdateStatus replaces obj's status, at its resource version.
func (r Resource[T, L]) UpdateStatus(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error) {
	return r.into(ctx, r.request("PUT", "status").Name(obj.GetName()).VersionedParams(&opts, r.params).Body(obj))
}

// Delete deletes the object called name.
func (r Resource[T, L]) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return r.request("DELETE").Name(name).Body(&opts).Do(ctx).Error()
}

// Patch applies a patch of type pt to the object called name.
func (r Resource[T, L]) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions) (T, error) {
	return r.into(ctx, r.request("PATCH").Name(name).VersionedParams(&opts, r.params).SetHeader("Content-Type", string(pt)).Body(data))
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
