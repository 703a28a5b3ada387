// The tutorial's chat server, as the benchmark's peer: express serves the page, the `ws`
// package accepts WebSockets on the same port, greets each client with "connection
// established", and forwards every message to every connected client, the sender included.
// Only change from the tutorial: no per-message console.log (it would dominate the cost).
const http = require('http');
const express = require('express');
const WebSocket = require('ws');

const port = Number(process.env.PORT ?? 8081);
const app = express();
app.get('/', (_req, res) => res.send('tutorial chat peer'));

const server = http.createServer(app);
const wss = new WebSocket.Server({ server });

wss.on('connection', (ws) => {
  ws.send('connection established');
  ws.on('message', (message) => {
    const text = message.toString();
    wss.clients.forEach((client) => {
      if (client.readyState === WebSocket.OPEN) {
        client.send(text);
      }
    });
  });
});

server.listen(port, '127.0.0.1', () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)) && setTimeout(() => process.exit(0), 1000).unref());
}
