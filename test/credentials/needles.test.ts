import t from 'tap'

t.test('credential needles for response scrubbing: the token, or an AWS key set\'s secret, key id and session token', async (t) => {
  const { credentialNeedles } = await import('../../src/credentials/needles.js')
  const { awsKeyCredential } = await import('../../src/credentials/aws-keys.js')
  const { Secret } = await import('../../src/util/secret.js')
  t.same(credentialNeedles({ token: new Secret('bound-token') }), ['bound-token'])
  const aws = awsKeyCredential({ Version: 1, AccessKeyId: 'AKIANEEDLE', SecretAccessKey: 'shh', SessionToken: 'sess' }, Date.now(), 'x')
  t.same(credentialNeedles(aws), ['shh', 'AKIANEEDLE', 'sess'])
  t.same(credentialNeedles(awsKeyCredential({ Version: 1, AccessKeyId: 'AKIANEEDLE', SecretAccessKey: 'shh' }, Date.now(), 'x')), ['shh', 'AKIANEEDLE'])
})
