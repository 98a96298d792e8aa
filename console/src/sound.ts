// The new-alert tone, made in the browser (no audio file to fetch): two short beeps, higher
// for critical alerts. The AudioContext is created on the login click, since browsers only
// allow sound after a user gesture.

let context: AudioContext | null = null;

export function unlockSound(): void {
  context ??= new AudioContext();
  void context.resume();
}

export function beep(critical: boolean): void {
  if (!context) return;
  const start = context.currentTime;
  const pitch = critical ? 1320 : 880;
  for (const offset of [0, 0.25]) {
    const osc = context.createOscillator();
    const gain = context.createGain();
    osc.type = "square";
    osc.frequency.value = pitch;
    gain.gain.setValueAtTime(0.0001, start + offset);
    gain.gain.exponentialRampToValueAtTime(0.2, start + offset + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.18);
    osc.connect(gain).connect(context.destination);
    osc.start(start + offset);
    osc.stop(start + offset + 0.2);
  }
}
