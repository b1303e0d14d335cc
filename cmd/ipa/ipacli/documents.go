package ipacli

// The GraphQL documents `ipa task` sends. Each is a constant and whole
// (fragments included) so that documents_test.go can validate every one
// against schema/*.graphqls: a field renamed in the schema fails a test
// here instead of a command at run time.

// taskFragment is what every command that shows one task asks for.
const taskFragment = `fragment TaskFields on Task {
  id title description status phase runtime runtimeConfig metadata labels createdAt updatedAt createdBy version
  restartPolicy { autoRestart maxAttempts windowSeconds initialBackoffMs maxBackoffMs }
  pod { state pid startedAt restarts nextAttemptAt live queuePosition crashes(last: 5) { at exitCode signal reason uptimeMs } }
  priority waitingFor { id title status }
}`

// taskGetFields adds, for task get, how the pod last ended and the
// workspace.
const taskGetFields = `pod { lastExit { at exitCode signal durationMs reason } } workspace { sizeBytes }`

// eventFields are the fields of an event every events command asks for.
const eventFields = `id taskId version position type data actorId correlationId causationId occurredAt`

// docCompletionTasks asks for the ids and titles shell completion offers
// for a task id.
const docCompletionTasks = `{ tasks(first: 50) { edges { node { id title } } } }`

// docCreateTask is for task create.
const docCreateTask = `mutation($in: CreateTaskInput!) { createTask(input: $in) { task { ...TaskFields } } }` + taskFragment

// docListTasks is for task list: one page of tasks.
const docListTasks = `query($filter: TaskFilter, $first: Int, $after: String) {
  tasks(filter: $filter, first: $first, after: $after) {
    edges { cursor node { id title status phase runtime version updatedAt pod { state } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } totalCount } }`

// docGetTask is for task get.
const docGetTask = `query($id: ID!) { task(id: $id) { ...TaskFields ` + taskGetFields + ` } }` + taskFragment

// docStartPod is for task start.
const docStartPod = `mutation($id: ID!, $ev: Int) { startPod(taskId: $id, expectedVersion: $ev) { started task { ...TaskFields } } }` + taskFragment

// docStopPod is for task stop.
const docStopPod = `mutation($id: ID!, $reason: String, $ev: Int) { stopPod(taskId: $id, reason: $reason, expectedVersion: $ev) { task { ...TaskFields } } }` + taskFragment

// docRestartPod is for task restart.
const docRestartPod = `mutation($id: ID!, $ev: Int) { restartPod(taskId: $id, expectedVersion: $ev) { task { ...TaskFields } } }` + taskFragment

// docTransitionPhase is for task move.
const docTransitionPhase = `mutation($id: ID!, $to: TaskPhase!, $note: String, $ev: Int) { transitionPhase(taskId: $id, to: $to, note: $note, expectedVersion: $ev) { task { ...TaskFields } } }` + taskFragment

// docCompleteTask is for task complete.
const docCompleteTask = `mutation($id: ID!, $ev: Int) { completeTask(taskId: $id, expectedVersion: $ev) { task { ...TaskFields } } }` + taskFragment

// docCancelTask is for task cancel.
const docCancelTask = `mutation($id: ID!, $reason: String!, $ev: Int) { cancelTask(taskId: $id, reason: $reason, expectedVersion: $ev) { task { ...TaskFields } } }` + taskFragment

// docTaskArtifacts is for task artifacts (and task download, for the URL).
const docTaskArtifacts = `query($id: ID!) { task(id: $id) { id artifacts { name sizeBytes sha256 savedAt url } } }`

// docSendMessage is for task send.
const docSendMessage = `mutation($id: ID!, $text: String!, $data: JSON, $ev: Int) {
  sendMessage(taskId: $id, text: $text, data: $data, expectedVersion: $ev) { message { id sentAt } task { id version } } }`

// docAnswerRequest is for task answer.
const docAnswerRequest = `mutation($r: ID!, $answer: String, $approve: Boolean, $comment: String) {
  answerRequest(requestId: $r, answer: $answer, approve: $approve, comment: $comment) {
    request { id kind state answer approved answeredBy } task { id phase } } }`

// docInputRequests is for task inbox.
const docInputRequests = `query($s: InputRequestState, $first: Int) {
  inputRequests(state: $s, first: $first) { edges { node { id kind prompt options state createdAt expiresAt answer approved answeredBy task { id title } } } pageInfo { hasNextPage endCursor } } }`

// docResolveID asks for the tasks whose ids start with a prefix, open and
// archived.
const docResolveID = `query($p: String!, $n: Int!) {
  open: tasks(filter: {idPrefix: $p}, first: $n) { edges { node { id title } } }
  archived: tasks(filter: {idPrefix: $p, archived: true}, first: $n) { edges { node { id title } } } }`

// docTaskEvents is for task events and task logs: one page of a task's
// stored events.
const docTaskEvents = `query($id: ID!, $first: Int, $after: String, $types: [String!]) {
  task(id: $id) { id status pod { state } restartPolicy { autoRestart } started: events(first: 1, types: ["pod_started"]) { totalCount } events(first: $first, after: $after, types: $types) {
    edges { cursor node { ` + eventFields + ` } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } totalCount } } }`

// docTaskEventsLive is for task events -f and task logs -f from now on.
const docTaskEventsLive = `subscription($id: ID!) { taskEvents(taskId: $id) { ` + eventFields + ` } }`

// docTaskEventsAfter is for task events -f and task logs -f after a version.
const docTaskEventsAfter = `subscription($id: ID!, $after: Int) { taskEvents(taskId: $id, afterVersion: $after) { ` + eventFields + ` } }`

// docTaskVersion asks task events -f for the version to follow on from.
const docTaskVersion = `query($id: ID!) { task(id: $id) { id version } }`

// docTaskChanged is for task watch.
const docTaskChanged = `subscription($filter: TaskFilter) { taskChanged(filter: $filter) {
  id title status phase runtime version updatedAt pod { state pid restarts } } }`
