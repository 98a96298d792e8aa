// The live feed: a WebSocket to /api/v1/feed that sends the token as its first message
// (browsers cannot put headers on a WebSocket, and URLs end up in logs), reconnecting
// with backoff. Each (re)connect is announced so the caller can reload what it missed.

import type { FeedMessage } from "./types";

const UNAUTHORIZED = 4401;

export interface FeedHandlers {
  message(message: FeedMessage): void;
  connected(): void;
  lost(): void;
  unauthorized(): void;
}

export function openFeed(token: string, on: FeedHandlers): () => void {
  let socket: WebSocket | null = null;
  let retryMs = 1000;
  let timer = 0;
  let stopped = false;

  const connect = (): void => {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/api/v1/feed`);
    socket.onopen = () => socket?.send(JSON.stringify({ token }));
    socket.onmessage = (event: MessageEvent<string>) => {
      const message = JSON.parse(event.data) as FeedMessage;
      if (message.kind === "hello") {
        retryMs = 1000;
        on.connected();
      } else {
        on.message(message);
      }
    };
    socket.onclose = (event) => {
      if (stopped) return;
      if (event.code === UNAUTHORIZED) {
        on.unauthorized();
        return;
      }
      on.lost();
      timer = window.setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30_000);
    };
  };

  connect();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
    socket?.close();
  };
}
