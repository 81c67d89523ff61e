package sdk

import (
	"net/http"
	"os"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Request is one run of an action: the environment, the command line, and clients that act as
// the execution's ServiceAccount.
type Request struct {
	Env
	// Args are the command-line arguments after the program's name (the template's rendered
	// args, when its command is the image's entrypoint).
	Args []string
	// RESTConfig, when set, is used instead of the pod's in-cluster identity (or the kubeconfig
	// named by KUBECONFIG); tests set it.
	RESTConfig *rest.Config

	once   sync.Once
	config *rest.Config
	err    error
}

// Config returns the action's identity: RESTConfig, else the kubeconfig named by KUBECONFIG,
// else the pod's ServiceAccount. In a dry run every write made with it (any method but GET,
// HEAD and OPTIONS) carries dryRun=All, whatever the caller's options say, so an action cannot
// change anything in a dry run even if it forgets to ask for one.
func (r *Request) Config() (*rest.Config, error) {
	r.once.Do(func() {
		cfg := r.RESTConfig
		if cfg == nil {
			cfg, r.err = loadConfig()
			if r.err != nil {
				return
			}
		}
		cfg = rest.CopyConfig(cfg)
		if cfg.UserAgent == "" {
			cfg.UserAgent = "kubernaut-action/" + r.ActionType
		}
		if r.DryRun {
			cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return dryRunWrites{rt} })
		}
		r.config = cfg
	})
	return r.config, r.err
}

func loadConfig() (*rest.Config, error) {
	if path := os.Getenv("KUBECONFIG"); path != "" {
		return clientcmd.BuildConfigFromFlags("", path)
	}
	return rest.InClusterConfig()
}

// Clientset returns a typed client for the action's identity (see Config).
func (r *Request) Clientset() (kubernetes.Interface, error) {
	cfg, err := r.Config()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// Dynamic returns a dynamic client for the action's identity (see Config).
func (r *Request) Dynamic() (dynamic.Interface, error) {
	cfg, err := r.Config()
	if err != nil {
		return nil, err
	}
	return dynamic.NewForConfig(cfg)
}

// DryRunOption is the value for a write's DryRun option: [All] in a dry run. Config's clients
// add it anyway; passing it states the intent where the write is made.
func (r *Request) DryRunOption() []string {
	if r.DryRun {
		return []string{metav1.DryRunAll}
	}
	return nil
}

// dryRunWrites adds dryRun=All to every request that may change something.
type dryRunWrites struct{ next http.RoundTripper }

func (d dryRunWrites) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return d.next.RoundTrip(req)
	}
	req = req.Clone(req.Context())
	q := req.URL.Query()
	q.Set("dryRun", metav1.DryRunAll)
	req.URL.RawQuery = q.Encode()
	return d.next.RoundTrip(req)
}

// WrappedRoundTripper lets client-go's transport debugging see through the wrapper.
func (d dryRunWrites) WrappedRoundTripper() http.RoundTripper { return d.next }
