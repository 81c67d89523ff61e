package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
)

// neverAppears is how long a spec watches for a template that must not be created.
const neverAppears = 5 * time.Second

// predefinedTemplate is an ActionTemplate as a predefined action's ConfigMap holds it.
func predefinedTemplate(name, image string) string {
	return fmt.Sprintf(`apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: ActionTemplate
metadata:
  name: %s
  labels:
    app.kubernetes.io/part-of: kubernaut-executor
spec:
  description: A predefined action of the controllers suite.
  image: %s
  targetKinds: [Deployment]
  rbac:
    rules:
      - apiGroups: [apps]
        resources: [deployments]
        verbs: [get]
`, name, image)
}

// predefinedConfigMap is a predefined action's ConfigMap, as the chart renders it.
func predefinedConfigMap(namespace, action, body string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: "kubernaut-executor-action-" + action,
			Labels: map[string]string{v1alpha1.LabelPredefinedAction: action},
		},
		Data: map[string]string{v1alpha1.PredefinedTemplateKey: body},
	}
}

// impersonating returns a client that impersonates user, with no group but
// system:authenticated, so that RBAC decides as it would for that person.
func impersonating(user string) client.Client {
	cfg := rest.CopyConfig(cluster.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	return c
}

// createCleaned creates obj with the admin client and deletes it when the spec ends.
func createCleaned(ctx context.Context, obj client.Object) {
	GinkgoHelper()
	Expect(k8s.Create(ctx, obj)).To(Succeed())
	DeferCleanup(func(ctx SpecContext) {
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, obj))).To(Succeed())
	})
}

// allTemplateNames lists every ActionTemplate's name.
func allTemplateNames(ctx context.Context) []string {
	list := &v1alpha1.ActionTemplateList{}
	Expect(k8s.List(ctx, list)).To(Succeed())
	names := make([]string, 0, len(list.Items))
	for _, t := range list.Items {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	return names
}

// templateAbsent reports whether the template is absent.
func templateAbsent(ctx context.Context, name string) func() bool {
	return func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: name}, &v1alpha1.ActionTemplate{}))
	}
}

// waitInstalled waits until the manager has installed the action from cm: its template, marked as
// created from cm, with the image of cm's template.
func waitInstalled(ctx context.Context, cm *corev1.ConfigMap, image string) *v1alpha1.ActionTemplate {
	GinkgoHelper()
	action := cm.Labels[v1alpha1.LabelPredefinedAction]
	tpl := &v1alpha1.ActionTemplate{}
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: action}, tpl)).To(Succeed())
		g.Expect(tpl.Labels).To(HaveKeyWithValue(v1alpha1.LabelPredefinedAction, action))
		g.Expect(tpl.Labels).To(HaveKeyWithValue(v1alpha1.LabelPartOf, v1alpha1.PartOfValue))
		g.Expect(tpl.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationPredefinedSource, cm.Namespace+"/"+cm.Name))
		g.Expect(tpl.Spec.Image).To(Equal(image))
	}).Should(Succeed())
	return tpl
}

// expectManagerInstalls checks that the manager is running and installs predefined actions from its
// own namespace, so that a spec's "never appears" is not the silence of a stopped manager.
func expectManagerInstalls(ctx context.Context, action string) {
	GinkgoHelper()
	cm := predefinedConfigMap(e2eutil.Namespace, action, predefinedTemplate(action, "kubernaut-actions"))
	createCleaned(ctx, cm)
	waitInstalled(ctx, cm, "kubernaut-actions")
	Expect(k8s.Delete(ctx, cm)).To(Succeed())
	Eventually(templateAbsent(ctx, action)).Should(BeTrue())
}

// warningsAbout returns the Warning Events about cm with that reason.
func warningsAbout(ctx context.Context, cm *corev1.ConfigMap, reason string) func(Gomega) []eventsv1.Event {
	return func(g Gomega) []eventsv1.Event {
		list := &eventsv1.EventList{}
		g.Expect(k8s.List(ctx, list, client.InNamespace(cm.Namespace))).To(Succeed())
		var out []eventsv1.Event
		for _, e := range list.Items {
			if e.Regarding.Kind == "ConfigMap" && e.Regarding.Name == cm.Name && e.Reason == reason && e.Type == corev1.EventTypeWarning {
				out = append(out, e)
			}
		}
		return out
	}
}

var _ = Describe("Predefined ActionTemplates", func() {
	It("installs a template from a labelled ConfigMap in the manager's namespace, updates it, and deletes it with the ConfigMap", func(ctx SpecContext) {
		cm := predefinedConfigMap(e2eutil.Namespace, "pd-installed", predefinedTemplate("pd-installed", "kubernaut-actions"))
		createCleaned(ctx, cm)
		tpl := waitInstalled(ctx, cm, "kubernaut-actions")
		Expect(tpl.OwnerReferences).To(BeEmpty())
		Expect(tpl.Spec.DefaultTimeout).NotTo(BeNil(), "the API server applied the schema's defaults")

		// Unchanged, it is not written again, although the stored spec holds the defaults and
		// its status changes (each change brings the ConfigMap back to the reconciler).
		writesTo := func() []write {
			return writes.matching(func(w write) bool { return w.Kind == "ActionTemplate" && w.Name == "pd-installed" })
		}
		Eventually(func(g Gomega) {
			got := &v1alpha1.ActionTemplate{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tpl), got)).To(Succeed())
			g.Expect(got.Status.Conditions).NotTo(BeEmpty())
		}).Should(Succeed())
		Consistently(writesTo).Should(HaveLen(1), "only the create")

		cm.Data[v1alpha1.PredefinedTemplateKey] = predefinedTemplate("pd-installed", "kubernaut-actions-v2")
		Expect(k8s.Update(ctx, cm)).To(Succeed())
		waitInstalled(ctx, cm, "kubernaut-actions-v2")

		Expect(k8s.Delete(ctx, cm)).To(Succeed())
		Eventually(templateAbsent(ctx, "pd-installed")).Should(BeTrue())
	})

	It("deletes a template whose ConfigMap was deleted while the manager was down", func(ctx SpecContext) {
		cm := predefinedConfigMap(e2eutil.Namespace, "pd-while-down", predefinedTemplate("pd-while-down", "kubernaut-actions"))
		createCleaned(ctx, cm)
		waitInstalled(ctx, cm, "kubernaut-actions")
		stopManager()
		restarted := false
		DeferCleanup(func() {
			if !restarted {
				startManager()
			}
		})
		Expect(k8s.Delete(ctx, cm)).To(Succeed())
		Consistently(templateAbsent(ctx, "pd-while-down"), time.Second).Should(BeFalse(), "nothing deletes it while the manager is down")
		startManager()
		restarted = true
		Eventually(templateAbsent(ctx, "pd-while-down")).Should(BeTrue())
	})

	It("reports a ConfigMap that holds no usable template with a Warning Event, and does not retry it", func(ctx SpecContext) {
		notATemplate := predefinedConfigMap(e2eutil.Namespace, "pd-not-a-template", "apiVersion: v1\nkind: Pod\nmetadata: {name: pd-not-a-template}\n")
		misnamed := predefinedConfigMap(e2eutil.Namespace, "pd-misnamed", predefinedTemplate("pd-other-name", "kubernaut-actions"))
		createCleaned(ctx, notATemplate)
		createCleaned(ctx, misnamed)
		for cm, message := range map[*corev1.ConfigMap]string{
			notATemplate: `holds apiVersion "v1" kind "Pod", not an ActionTemplate`,
			misnamed:     `holds the ActionTemplate "pd-other-name" but the label kubernaut.io/predefined-action names "pd-misnamed"`,
		} {
			Eventually(warningsAbout(ctx, cm, controllers.ReasonInvalidPredefinedAction)).Should(ContainElement(
				HaveField("Note", ContainSubstring(message))))
			// A terminal error: no retries, so the Event is recorded once, not as a series.
			Consistently(warningsAbout(ctx, cm, controllers.ReasonInvalidPredefinedAction)).Should(ConsistOf(HaveField("Series", BeNil())))
		}
		Expect(templateAbsent(ctx, "pd-not-a-template")()).To(BeTrue())
		Expect(templateAbsent(ctx, "pd-misnamed")()).To(BeTrue())
		Expect(templateAbsent(ctx, "pd-other-name")()).To(BeTrue())
	})

	It("creates no template from a ClusterRole carrying one in the old annotation, made by a user whose only right is to create ClusterRoles", func(ctx SpecContext) {
		createCleaned(ctx, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "pd-test-clusterrole-creator"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles"}, Verbs: []string{"create"}}},
		})
		createCleaned(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "pd-test-mallory"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "pd-test-clusterrole-creator"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "mallory"}},
		})
		mallory := impersonating("mallory")
		before := allTemplateNames(ctx)

		// mallory may not write templates or the manager's ConfigMaps...
		Eventually(func() bool {
			return apierrors.IsForbidden(mallory.Create(ctx, predefinedConfigMap(e2eutil.Namespace, "pd-evil", predefinedTemplate("pd-evil", "evil.example/x:1"))))
		}).Should(BeTrue())
		evilTemplate := &v1alpha1.ActionTemplate{ObjectMeta: metav1.ObjectMeta{Name: "pd-evil"},
			Spec: v1alpha1.ActionTemplateSpec{Image: "evil.example/x:1", TargetKinds: []string{"Deployment"}}}
		Expect(apierrors.IsForbidden(mallory.Create(ctx, evilTemplate))).To(BeTrue())

		// ...but RBAC lets them create a rule-less ClusterRole dressed as a ceiling fragment that
		// carries an ActionTemplate in the annotation earlier versions read.
		fragment := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{
			Name: "pd-evil-fragment",
			Labels: map[string]string{
				v1alpha1.LabelAggregateToCeiling: "true", v1alpha1.LabelPredefinedAction: "pd-evil",
				v1alpha1.LabelPartOf: v1alpha1.PartOfValue,
			},
			Annotations: map[string]string{"kubernaut.io/action-template": predefinedTemplate("pd-evil", "evil.example/x:1")},
		}}
		Eventually(func() error { return mallory.Create(ctx, fragment) }).Should(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, fragment))).To(Succeed()) })

		Consistently(func(g Gomega) {
			g.Expect(templateAbsent(ctx, "pd-evil")()).To(BeTrue(), "the manager created the ClusterRole's template")
			g.Expect(allTemplateNames(ctx)).To(Equal(before))
		}, neverAppears).Should(Succeed())
		expectManagerInstalls(ctx, "pd-live-1")
		Expect(templateAbsent(ctx, "pd-evil")()).To(BeTrue())
	})

	It("creates no template from a labelled ConfigMap in another namespace, made by that namespace's admin", func(ctx SpecContext) {
		ns, err := cluster.Namespace(ctx, "predefined", nil)
		Expect(err).NotTo(HaveOccurred())
		createCleaned(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nadia-admin"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "nadia"}},
		})
		nadia := impersonating("nadia")
		before := allTemplateNames(ctx)

		elsewhere := predefinedConfigMap(ns, "pd-elsewhere", predefinedTemplate("pd-elsewhere", "evil.example/x:1"))
		Eventually(func() error { return nadia.Create(ctx, elsewhere) }).Should(Succeed())
		Expect(apierrors.IsForbidden(nadia.Create(ctx, predefinedConfigMap(e2eutil.Namespace, "pd-elsewhere", predefinedTemplate("pd-elsewhere", "evil.example/x:1"))))).
			To(BeTrue(), "a namespace's admin may not write the manager's namespace")

		Consistently(func(g Gomega) {
			g.Expect(templateAbsent(ctx, "pd-elsewhere")()).To(BeTrue(), "the manager created the template of another namespace's ConfigMap")
			g.Expect(allTemplateNames(ctx)).To(Equal(before))
		}, neverAppears).Should(Succeed())
		expectManagerInstalls(ctx, "pd-live-2")
		Expect(templateAbsent(ctx, "pd-elsewhere")()).To(BeTrue())
	})

	It("neither adopts nor overwrites a template it did not create, says why in an Event, and installs the action once that template is gone", func(ctx SpecContext) {
		owner := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "pd-test-foreign-owner"}}
		createCleaned(ctx, owner)
		foreign := &v1alpha1.ActionTemplate{
			ObjectMeta: metav1.ObjectMeta{
				Name:   "pd-foreign",
				Labels: map[string]string{"team": "platform"},
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole", Name: owner.Name, UID: owner.UID,
					BlockOwnerDeletion: ptr.To(false),
				}},
			},
			Spec: v1alpha1.ActionTemplateSpec{
				Description: "Written by an administrator.", Image: "registry.example/admin-action:1", TargetKinds: []string{"Deployment"},
			},
		}
		createCleaned(ctx, foreign)
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(foreign), foreign)).To(Succeed())
		original := foreign.DeepCopy()

		cm := predefinedConfigMap(e2eutil.Namespace, "pd-foreign", predefinedTemplate("pd-foreign", "kubernaut-actions"))
		createCleaned(ctx, cm)
		Eventually(warningsAbout(ctx, cm, controllers.ReasonTemplateNotControlled)).Should(ContainElement(
			HaveField("Note", ContainSubstring("ActionTemplate pd-foreign exists and was not created from this ConfigMap"))))
		Consistently(func(g Gomega) {
			got := &v1alpha1.ActionTemplate{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(foreign), got)).To(Succeed())
			g.Expect(got.UID).To(Equal(original.UID))
			g.Expect(got.Generation).To(Equal(original.Generation), "the template's spec was written")
			g.Expect(got.Spec).To(Equal(original.Spec))
			g.Expect(got.OwnerReferences).To(Equal(original.OwnerReferences))
			g.Expect(got.Labels).To(Equal(original.Labels))
			g.Expect(got.Annotations).NotTo(HaveKey(v1alpha1.AnnotationPredefinedSource))
		}, neverAppears).Should(Succeed())

		// Once the administrator deletes theirs, the action is installed.
		Expect(k8s.Delete(ctx, foreign)).To(Succeed())
		tpl := waitInstalled(ctx, cm, "kubernaut-actions")
		Expect(tpl.UID).NotTo(Equal(original.UID))
		Expect(tpl.OwnerReferences).To(BeEmpty())
		Expect(k8s.Delete(ctx, cm)).To(Succeed())
		Eventually(templateAbsent(ctx, "pd-foreign")).Should(BeTrue())
	})
})
