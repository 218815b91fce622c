// The live view: renders the state the server streams, and posts the
// controls. Every text from the broker or a service goes in with
// textContent, never as HTML.
'use strict';

const $ = (sel) => document.querySelector(sel);

// el builds an element: el('td', {class: 'num'}, 'text', childNode).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function clock(ms) {
  const d = new Date(ms);
  const p = (n, w) => String(n).padStart(w, '0');
  return `${p(d.getHours(), 2)}:${p(d.getMinutes(), 2)}:${p(d.getSeconds(), 2)}.${p(d.getMilliseconds(), 3)}`;
}

function duration(ms) {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

let state = null;

// The stream: EventSource connects again by itself when it drops.
function connect() {
  const es = new EventSource('/api/stream');
  es.onmessage = (e) => {
    state = JSON.parse(e.data);
    const status = $('#status');
    status.textContent = 'live';
    status.className = 'pill on';
    render(state);
  };
  es.onerror = () => {
    const status = $('#status');
    status.textContent = 'disconnected: is myevents still running?';
    status.className = 'pill off';
  };
}

async function control(name, body) {
  $('#notice').hidden = true;
  let answer = {};
  let res;
  try {
    res = await fetch('/api/' + name, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body || {}),
    });
    answer = await res.json();
  } catch (err) {
    notice('the demo did not answer: ' + err);
    return;
  }
  if (!res.ok) notice(answer.error || res.statusText);
}

function notice(text) {
  const n = $('#notice');
  n.textContent = text;
  n.hidden = false;
}

// ---- rendering -------------------------------------------------------

const stateLabels = {
  eventservice: { up: 'up · 200', unavailable: 'answering 503', down: 'down', odd: 'odd answer', starting: 'starting' },
  bookingservice: { up: 'serving · 200', unavailable: 'answering 503', down: 'down', odd: 'odd answer', starting: 'starting' },
};

function render(s) {
  $('#broker-title').textContent = s.broker.title || '';
  const busy = $('#busy');
  busy.hidden = !(s.busy || s.hold);
  busy.textContent = s.hold || (s.busy ? s.busy + '…' : '');
  const locked = Boolean(s.busy || s.hold);
  for (const b of document.querySelectorAll('button')) {
    const c = b.dataset.control;
    b.disabled = locked || (c in s.controls && !s.controls[c]);
  }
  $('#restart').textContent = s.broker.kind === 'amqp' ? 'Restart (queue fills while down)' : 'Restart with an empty store';
  $('#restart-hint').textContent = s.broker.kind === 'amqp'
    ? 'RabbitMQ: BookingService keeps its state in a SQLite file. Restart stops it, lets EventService create a concert meanwhile (its events wait in the queue), and starts it again: watch the queue fill and drain.'
    : 'Kafka: BookingService keeps its state in memory. Restart starts it empty: it replays the log from the oldest record and answers 503 until it has caught up.';
  const slow = $('#slow');
  if (document.activeElement !== slow) slow.checked = s.slow;
  $('#pace').textContent = s.pace;
  for (const svc of s.services) renderService(svc);
  renderRun(s);
  renderBroker(s);
  renderSeats(s);
  renderActivity(s);
  renderFlow(s);
}

function renderService(svc) {
  const box = $('#svc-' + svc.key);
  box.className = 'box ' + svc.state;
  box.querySelector('.url').textContent = svc.url;
  const badge = box.querySelector('.badge');
  badge.className = 'badge ' + svc.state;
  badge.textContent = stateLabels[svc.key][svc.state] || svc.state;
  box.querySelector('.detail').textContent = svc.detail || '';
  const history = box.querySelector('.history');
  // Newest first: the box shows as many as fit.
  history.replaceChildren(...svc.history.slice().reverse().map((h) =>
    el('span', { class: 'chip ' + h.state }, `${clock(h.at).slice(0, 8)} ${stateLabels[svc.key][h.state] || h.state}`)));
}

function renderRun(s) {
  const r = s.run;
  const run = $('#run');
  if (!r.number) { run.replaceChildren(); return; }
  const slow = r.pace ? ` (slow motion: ${r.pace} per event)` : '';
  const lines = [`run ${r.number}, started ${clock(r.started).slice(0, 8)}`];
  if (s.broker.kind === 'amqp') {
    lines.push(`${r.waiting} message(s) waited in its queue; handled ${r.applied} event(s)`);
    lines.push(r.done ? `drained after ${duration(r.done - r.started)}${slow}` : `draining${slow}`);
  } else {
    lines.push(`replayed ${r.applied} event(s) of ${r.waiting} record(s) in the log`);
    lines.push(r.done ? `caught up after ${duration(r.done - r.started)}${slow}` : `replaying, not caught up yet${slow}`);
  }
  run.replaceChildren(...lines.map((l) => el('div', {}, l)));
}

let lastEnds = {};

function renderBroker(s) {
  const b = s.broker;
  const box = $('#broker');
  box.className = 'box broker ' + (b.up ? 'up' : 'down');
  const parts = [el('h3', {}, b.kind === 'amqp' ? 'RabbitMQ' : 'Kafka')];
  if (b.error) parts.push(el('div', { class: 'detail' }, b.error));
  const ends = {};
  for (const t of b.topics || []) {
    const cells = t.partitions.map((p) => {
      const id = t.name + '/' + p.partition;
      ends[id] = p.end;
      const fresh = lastEnds[id] !== undefined && lastEnds[id] !== p.end;
      return el('span', { class: 'cell' + (t.deadLetter ? ' dead' : '') + (fresh ? ' fresh' : ''), title: `oldest offset ${p.oldest}` },
        `p${p.partition} `, el('b', {}, p.end));
    });
    parts.push(el('div', { class: 'topic' },
      el('span', { class: 'name' }, 'topic ' + t.name), ' ',
      el('span', { class: 'detail' }, t.deadLetter ? '(dead letters) end offset per partition' : 'end offset per partition'),
      el('div', { class: 'cells' }, ...cells)));
  }
  if (b.kind === 'amqp') {
    parts.push(el('div', { class: 'topic' }, el('span', { class: 'name' }, 'exchange ' + b.exchange), ' (topic)'));
    for (const q of b.queues || []) {
      ends['q/' + q.name] = q.ready;
      const fresh = lastEnds['q/' + q.name] !== undefined && lastEnds['q/' + q.name] !== q.ready;
      parts.push(el('div', { class: 'topic' },
        el('span', { class: 'name' }, (q.deadLetter ? 'dead-letter queue ' : 'queue ') + q.name),
        el('div', { class: 'cells' },
          el('span', { class: 'cell' + (q.deadLetter ? ' dead' : '') + (fresh ? ' fresh' : '') }, 'ready ', el('b', {}, q.ready)),
          el('span', { class: 'cell' }, 'consumers ', el('b', {}, q.consumers))),
        q.error ? el('div', { class: 'detail' }, q.error) : ''));
    }
  }
  parts.push(el('div', { class: 'note' }, b.kind === 'amqp'
    ? "BookingService's quorum queue is bound for location.created, event.created and event.booked; what it can never process goes to its dead-letter exchange and queue."
    : 'BookingService (memory store) reads every partition from the oldest record: no consumer group, nothing committed. What it can never process goes to events.dlq.'));
  box.replaceChildren(...parts);
  lastEnds = ends;
}

function renderSeats(s) {
  const body = $('#seats tbody');
  $('#seats-empty').hidden = s.concerts.length > 0;
  const rows = new Map([...body.children].map((tr) => [tr.dataset.id, tr]));
  const order = [];
  for (const c of s.concerts) {
    let tr = rows.get(c.id);
    if (!tr) {
      const book = el('button', { class: 'book' }, 'Book');
      book.addEventListener('click', () => control('book', { event: c.id, seats: Number($('#book-seats').value) }));
      const race = el('button', { class: 'race' }, 'Last seat: 20 clients');
      race.addEventListener('click', () => control('race', { event: c.id }));
      tr = el('tr', { 'data-id': c.id },
        el('td', { class: 'name' }), el('td', { class: 'num capacity' }), el('td', { class: 'num booked' }),
        el('td', { class: 'num available' }), el('td', { class: 'barcell' }), el('td', {}, book, ' ', race));
    }
    tr.className = c.status === 'ok' ? '' : 'stale';
    tr.querySelector('.name').replaceChildren(c.name, el('div', { class: 'key' }, c.id),
      c.status === 'ok' ? '' : el('div', { class: 'status' }, c.status));
    tr.querySelector('.capacity').textContent = c.capacity;
    tr.querySelector('.booked').textContent = c.known ? c.booked : '–';
    tr.querySelector('.available').textContent = c.known ? c.available : '–';
    const pct = c.capacity ? Math.round(100 * c.booked / c.capacity) : 0;
    const bar = el('div', { class: 'bar' + (c.known && c.available === 0 ? ' full' : '') }, el('span', { style: `width:${pct}%` }));
    tr.querySelector('.barcell').replaceChildren(bar);
    for (const b of tr.querySelectorAll('button')) b.disabled = Boolean(s.busy || s.hold);
    order.push(tr);
  }
  // Touch the rows only when the list changed: a row taken out and put
  // back between the press and the release of the mouse loses the click.
  const same = order.length === body.children.length && order.every((tr, i) => body.children[i] === tr);
  if (!same) body.replaceChildren(...order);
}

function renderActivity(s) {
  $('#activity').replaceChildren(...s.activity.map((a) =>
    el('li', { class: a.ok ? 'ok' : 'fail' }, el('span', { class: 't' }, clock(a.at).slice(0, 8)), a.text)));
}

let seenSeq = 0;

function renderFlow(s) {
  $('#flow-total').textContent = `${s.flowTotal} message(s) seen, newest first`;
  const newest = s.flow.length ? s.flow[0].seq : 0;
  // Kafka: a later apply is a replay of the log; RabbitMQ: a redelivery.
  const again = s.broker.kind === 'kafka' ? 'replayed' : 'again';
  const rows = s.flow.map((f) => {
    const applied = f.applied.length
      ? [`+${duration(f.applied[0] - f.emitted)}`, ...f.applied.slice(1).map((t) => `${again} ${clock(t)}`)].join(' · ')
      : f.deadLetter ? '' : f.deadLettered ? `never: dead-lettered (${f.deadLettered})` : 'not yet';
    const cls = [f.deadLetter ? 'deadcopy' : '', f.deadLettered ? 'poisoned' : '', seenSeq && f.seq > seenSeq ? 'fresh' : ''].join(' ');
    return el('tr', { class: cls, 'data-seq': f.seq },
      el('td', { class: 'when' }, clock(f.emitted)),
      el('td', { class: 'ev' }, f.name, f.key ? el('div', { class: 'key' }, 'key ' + f.key) : ''),
      el('td', {}, f.where),
      el('td', {}, f.summary, f.error ? el('div', { class: 'key' }, f.error) : ''),
      el('td', { class: 'applied' }, applied));
  });
  $('#flow tbody').replaceChildren(...rows);
  seenSeq = newest;
}

// ---- controls --------------------------------------------------------

document.addEventListener('DOMContentLoaded', () => {
  for (const b of document.querySelectorAll('button[data-control]')) {
    b.addEventListener('click', () => {
      const body = {};
      if (b.dataset.control === 'poison' && state && state.concerts.length) body.event = state.concerts[0].id;
      control(b.dataset.control, body);
    });
  }
  $('#create-form').addEventListener('submit', (e) => {
    e.preventDefault();
    control('create', { name: $('#create-name').value, seats: Number($('#create-seats').value) });
  });
  $('#slow').addEventListener('change', (e) => control('slow', { on: e.target.checked }));
  connect();
});
