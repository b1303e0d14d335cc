package exec

// ConfigSchema is the JSON Schema of the exec runtime config, shown in the
// runtimes query (the console shows its descriptions). ParseConfig is the
// check that decides; the bounds here are its bounds.
const ConfigSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["command"],
  "properties": {
    "command": {
      "type": "array",
      "items": {"type": "string"},
      "minItems": 1,
      "maxItems": 256,
      "description": "The program and its arguments (argv), run without a shell; use [\"sh\", \"-c\", \"…\"] for one."
    },
    "env": {
      "type": "object",
      "additionalProperties": {"type": "string"},
      "description": "Environment variables of the command, over PATH, HOME and LANG; nothing of the server's own environment is passed."
    },
    "timeoutMs": {
      "type": "integer",
      "minimum": 0,
      "maximum": 604800000,
      "description": "Stop the command after this many milliseconds; 0 means no timeout."
    },
    "maxOutputLines": {
      "type": "integer",
      "minimum": 0,
      "maximum": 1000000,
      "description": "Output lines recorded (head and tail are kept); 0 means 10000."
    },
    "limits": {
      "type": "object",
      "description": "Resource limits of the command (rlimits); 0 means no limit.",
      "properties": {
        "memoryMB": {"type": "integer", "minimum": 0, "maximum": 1048576, "description": "Address space of each process, in MB."},
        "cpuSeconds": {"type": "integer", "minimum": 0, "maximum": 604800, "description": "CPU time of each process, in seconds."},
        "openFiles": {"type": "integer", "minimum": 0, "maximum": 1048576, "description": "Open file descriptors of each process."},
        "processes": {"type": "integer", "minimum": 0, "maximum": 4194304, "description": "Processes of the server's OS user (RLIMIT_NPROC, counted per user)."}
      },
      "additionalProperties": false
    },
    "sandbox": {
      "type": "object",
      "description": "What the sandbox (bwrap, --sandbox) lets through: by default no network and only the task's workspace writable.",
      "properties": {
        "network": {"type": "boolean", "default": false, "description": "Keep the host's network (loopback included)."},
        "writable": {
          "type": "array",
          "items": {"type": "string"},
          "maxItems": 32,
          "description": "More absolute paths the command may write; each must exist and neither hold nor lie inside the server's files."
        }
      },
      "additionalProperties": false
    },
    "onSuccess": {
      "type": "string",
      "enum": ["COMPLETE", "STOP"],
      "default": "STOP",
      "description": "What a command that exits 0 does to its task: COMPLETE completes it, STOP leaves it open."
    }
  },
  "additionalProperties": true
}`

// ExampleConfig is a valid config, pre-filled by the console.
const ExampleConfig = `{"command": ["sh", "-c", "echo hello"], "timeoutMs": 60000}`
