// The fake OpenAI-compatible upstream of the tests, run as its own process (as a real
// model server is), driven over IPC by bench scripts. Times are on the system's
// monotonic clock (bench/lib.ts nowMono) so the parent can compare them.
import { startFakeUpstream } from '../test/helpers/fake-upstream.ts';
import { toMono } from './lib.ts';

const upstream = await startFakeUpstream({
  behaviour: 'stream',
  intervalMs: Number(process.env.UPSTREAM_INTERVAL_MS ?? 5),
  tokens: Array.from({ length: Number(process.env.UPSTREAM_TOKENS ?? 2000) }, (_, i) => ` tok${i}`),
});
const abs = toMono;

type Cmd =
  | { id: number; cmd: 'wait-request'; n: number }
  | { id: number; cmd: 'wait-close'; index: number }
  | { id: number; cmd: 'close' };
process.on('message', (m: Cmd) => {
  void (async () => {
    if (m.cmd === 'wait-request') {
      await upstream.waitForRequests(m.n, 30_000);
      process.send!({ id: m.id });
    } else if (m.cmd === 'wait-close') {
      const req = upstream.requests[m.index]!;
      const at = await upstream.waitForSocketClose(req, 30_000);
      process.send!({ id: m.id, closedAt: abs(at), tokensAfter: req.tokensAfterClientGone });
    } else {
      await upstream.close();
      process.send!({ id: m.id });
      process.exit(0);
    }
  })();
});
process.send!({ ready: upstream.baseURL });
