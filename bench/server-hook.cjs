// Preloaded into every ximssd child of the bench (node --require), with an IPC channel.
// - Watchdog: when the bench process goes away (the channel closes), the server is told
//   to stop (SIGTERM, so that a --cpu-prof profile is still written), then forced out.
// - On the message 'gc' (the memory figure; needs --expose-gc): two full collections,
//   then process.memoryUsage() is sent back.
'use strict';
if (typeof process.send === 'function') {
  process.on('message', (message) => {
    if (message !== 'gc') return;
    if (typeof global.gc === 'function') {
      global.gc();
      global.gc();
    }
    process.send(process.memoryUsage());
  });
  process.on('disconnect', () => {
    process.kill(process.pid, 'SIGTERM');
    setTimeout(() => process.exit(1), 5000).unref();
  });
  // The channel itself must not keep the server alive.
  if (process.channel && typeof process.channel.unref === 'function') process.channel.unref();
}
