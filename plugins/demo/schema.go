package demo

// ConfigSchema is the JSON Schema of the demo's runtime config, shown in the
// runtimes query (the console shows its descriptions). ParseConfig is the
// check that decides.
const ConfigSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "stepMs": {
      "type": "integer",
      "minimum": 10,
      "maximum": 3600000,
      "default": 2000,
      "description": "Milliseconds between two phase steps."
    }
  },
  "additionalProperties": false
}`

// ExampleConfig is a valid config, pre-filled by the console.
const ExampleConfig = `{"stepMs": 2000}`
