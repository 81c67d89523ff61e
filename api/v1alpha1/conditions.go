package v1alpha1

// Condition types.
const (
	// ConditionReady is True when the object did what it is for: an execution Completed, a
	// template usable by executions.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the executor is still working towards a final state.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when no progress is possible without a change by a person.
	ConditionStalled = "Stalled"
	// ConditionApproved is set on an execution that waits for approval: Unknown while it waits,
	// True once approved, False once denied (or when the wait timed out). Setting it is how an
	// approver decides; the webhook lets nobody but the manager change any other status field.
	ConditionApproved = "Approved"
	// ConditionRBACMaterialized is True when a template's rules exist as its ClusterRole, under
	// the RBAC ceiling.
	ConditionRBACMaterialized = "RBACMaterialized"
)

// Reasons used by KubernetesExecution conditions and attempts.
const (
	// ReasonSucceeded: the action reported success.
	ReasonSucceeded = "Succeeded"
	// ReasonProgressing: an attempt's Job is being created or is running.
	ReasonProgressing = "Progressing"
	// ReasonBackingOff: an attempt failed; the next one waits for its backoff.
	ReasonBackingOff = "BackingOff"
	// ReasonWaitingForTemplate: the action's template is not usable yet.
	ReasonWaitingForTemplate = "WaitingForTemplate"
	// ReasonActionFailed: the action ran and reported failure (or exited non-zero).
	ReasonActionFailed = "ActionFailed"
	// ReasonNonRetryable: the failure may not be retried (non-idempotent action or an exit code
	// the template marks as final).
	ReasonNonRetryable = "NonRetryableFailure"
	// ReasonMaxRetriesExceeded: every allowed attempt failed.
	ReasonMaxRetriesExceeded = "MaxRetriesExceeded"
	// ReasonTimedOut: the execution ran past its timeout.
	ReasonTimedOut = "TimedOut"
	// ReasonDeadlineExceeded: the Job controller stopped an attempt at its active deadline.
	ReasonDeadlineExceeded = "DeadlineExceeded"
	// ReasonJobDeleted: an attempt's Job disappeared before it finished.
	ReasonJobDeleted = "JobDeleted"
	// ReasonImagePullFailed: the action's image could not be pulled or run.
	ReasonImagePullFailed = "ImagePullFailed"
	// ReasonValidationFailed: the execution does not fit its template; it never runs.
	ReasonValidationFailed = "ValidationFailed"
	// ReasonTemplateNotReady: the action's template cannot be used (see its Ready condition);
	// the execution never runs.
	ReasonTemplateNotReady = "TemplateNotReady"
	// ReasonGrantRefused: the API server refused the execution's RBAC grant.
	ReasonGrantRefused = "GrantRefused"
	// ReasonRequesterForbidden: the requester recorded at admission no longer holds every
	// permission the action would be granted; the message names what is missing.
	ReasonRequesterForbidden = "RequesterForbidden"
	// ReasonRequesterNotRecorded: the execution carries no admission record, so it was not
	// admitted by the executor's webhook and nobody's rights bound it. It never runs.
	ReasonRequesterNotRecorded = "RequesterNotRecorded"
	// ReasonTemplateChanged: the ActionTemplate was edited, replaced or deleted after the
	// execution was admitted; no further attempt starts.
	ReasonTemplateChanged = "TemplateChanged"
	// ReasonPodDisrupted: the attempt's pod was lost to something other than its action (evicted,
	// preempted, lost with its node, or deleted while it ran). An evicted idempotent action's pod
	// is run again by the Job controller within its attempt; a deleted one's attempt ends with
	// this reason and the next attempt follows; an action that is not idempotent never runs
	// again, and its execution fails with this reason.
	ReasonPodDisrupted = "PodDisrupted"
	// ReasonTargetNotFound: the target no longer exists when an attempt is due, so none starts.
	ReasonTargetNotFound = "TargetNotFound"
	// ReasonClusterNotFound: the target cluster (spec.action.target.cluster) is not registered,
	// or its Secret was removed before the execution ended.
	ReasonClusterNotFound = "ClusterNotFound"
	// ReasonClusterUnreachable: the target cluster does not answer. The execution waits with
	// this reason, in its phase, until the cluster answers or its timeout passes (then TimedOut).
	ReasonClusterUnreachable = "ClusterUnreachable"
	// ReasonTargetBusy: another execution of a mutating action runs on the target; this one
	// waits for it (Pending), or failed when its queue timeout passed first.
	ReasonTargetBusy = "TargetBusy"
	// ReasonQueueFull: the action's concurrency cap or the executor's cap on running Jobs
	// (--max-running-jobs) is reached; the execution waits (Pending), or failed when its queue
	// timeout passed first.
	ReasonQueueFull = "QueueFull"
	// ReasonRateLimited: the action's rate limit is reached; the execution waits (Pending), or
	// failed when its queue timeout passed first.
	ReasonRateLimited = "RateLimited"
	// ReasonAwaitingApproval: the execution waits for a person to approve or deny it.
	ReasonAwaitingApproval = "AwaitingApproval"
	// ReasonApproved: an approver approved the execution.
	ReasonApproved = "Approved"
	// ReasonDenied: an approver denied the execution; it never runs.
	ReasonDenied = "Denied"
	// ReasonApprovalTimedOut: nobody decided within the execution's timeout; it never runs.
	ReasonApprovalTimedOut = "ApprovalTimedOut"
)

// Reasons used by ActionTemplate conditions.
const (
	// ReasonRulesMaterialized: the template's ClusterRole holds its rules.
	ReasonRulesMaterialized = "RulesMaterialized"
	// ReasonForbiddenRule: a rule uses a wildcard, an escalating verb (escalate, bind,
	// impersonate) or a non-resource URL, which no template may grant.
	ReasonForbiddenRule = "ForbiddenRule"
	// ReasonRulesExceedCeiling: some rules are not covered by the executor's RBAC ceiling; the
	// message names them.
	ReasonRulesExceedCeiling = "RulesExceedCeiling"
	// ReasonInvalidTemplate: the parameter schema does not compile, a templated string does not
	// parse or render, or the env overrides the executor's variables; the message names each.
	ReasonInvalidTemplate = "InvalidTemplate"
	// ReasonMaterializationFailed: the ClusterRole could not be written.
	ReasonMaterializationFailed = "MaterializationFailed"
)
