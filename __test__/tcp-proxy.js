'use strict';
// A TCP proxy for tests, between the package and a Redis: `freeze()` makes every open
// connection silent (no FIN, no RST, no bytes either way: both sockets stay open and
// nothing is forwarded or read), as a vanished peer or an expired NAT entry does, while
// new connections still go through.

const net = require('node:net');

class TcpProxy {
  #server;
  #pairs = new Set();
  #target;
  port = 0;

  constructor(targetPort, targetHost = '127.0.0.1') {
    this.#target = { port: targetPort, host: targetHost };
  }

  start() {
    this.#server = net.createServer((client) => {
      const upstream = net.connect(this.#target);
      const pair = { client, upstream, frozen: false };
      this.#pairs.add(pair);
      const forward = (from, to) =>
        from.on('data', (d) => {
          if (!pair.frozen) to.write(d);
        });
      forward(client, upstream);
      forward(upstream, client);
      const end = () => {
        this.#pairs.delete(pair);
        if (!pair.frozen) {
          client.destroy();
          upstream.destroy();
        }
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
    return new Promise((resolve) => {
      this.#server.listen(0, '127.0.0.1', () => {
        this.port = this.#server.address().port;
        resolve(this);
      });
    });
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Every connection open now goes silent, and stays open until close(). */
  freeze() {
    for (const p of this.#pairs) {
      p.frozen = true;
      p.client.pause();
      p.upstream.pause();
    }
    return this.#pairs.size;
  }

  async close() {
    for (const p of this.#pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
    this.#pairs.clear();
    await new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

module.exports = { TcpProxy };
