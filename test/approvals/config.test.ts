import t from 'tap'
import { parseConfig } from '../../src/config/load.js'

/** The approval settings a config may and may not carry. */

const yaml = (approve: string, approval = '') => `
instance_id: approvals-config
ca: { dir: /tmp/unused }
issuers: { key: { type: local_jwt } }
tools:
  mail: { match: { host: mail.example.com }, issuer: key, approve: ${approve}${approval} }
`
const problem = (text: string): string => {
  try {
    parseConfig(text, 'test.yaml', {})
    return ''
  } catch (err) {
    return (err as Error).message
  }
}

const hook = (url: string): string => `, approval: { webhook: ${url} }`
t.equal(problem(yaml('[{ methods: [POST], path_prefix: /send }]', hook('https://hooks.example.com/x'))), '')
t.match(problem(yaml('[{}]')), /an approve rule names methods, a path_prefix or mcp_tools/)
t.match(problem(yaml('[{ methods: [POST] }]', hook('http://hooks.example.com/x'))),
  /plain http:\/\/ to "hooks\.example\.com"/, 'a webhook in clear over the network is refused')
t.equal(problem(yaml('[{ methods: [POST] }]', hook('http://127.0.0.1:9/x'))), '', 'loopback may be plain http')
