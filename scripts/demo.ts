// Placeholder until the jobs exist (see the handlers issue).
console.log('npm run demo: not yet — the jobs are being built. Run `npm test` meanwhile.');
