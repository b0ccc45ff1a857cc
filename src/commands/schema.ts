import type { Command } from './command.js'

/** `sidekey schema`: the config's JSON Schema, for editors and CI. */
export const schema: Command = {
  name: 'schema',
  summary: 'print the config\'s JSON Schema (as in config/sidekey.schema.json)',
  usage: 'usage: sidekey schema   (the config\'s JSON Schema, as in config/sidekey.schema.json)',
  options: {},
  async run (_args, io) {
    const { configJsonSchemaText } = await import('../config/json-schema.js')
    io.stdout.write(configJsonSchemaText())
    return 0
  },
}
