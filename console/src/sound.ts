// Alert tones, made in the browser (no audio file to fetch). Each severity has its own
// pattern, so an operator who is not looking knows how urgent it is: 紧急 is a long
// two-pitch siren, 高 two beeps, anything lower one soft beep. The AudioContext is created
// on the login click, since browsers only allow sound after a user gesture.

let context: AudioContext | null = null;

export function unlockSound(): void {
  context ??= new AudioContext();
  void context.resume();
}

// (pitch in Hz, start offset in s) for each pulse; 0.18 s each.
const PATTERNS: Record<string, [number, number][]> = {
  critical: [0, 0.2, 0.4, 0.6, 0.8, 1.0].map((at, i) => [i % 2 ? 990 : 1320, at]),
  high: [
    [880, 0],
    [880, 0.25],
  ],
};
const SOFT: [number, number][] = [[660, 0]];

export function beep(severity: string): void {
  if (!context) return;
  const start = context.currentTime;
  const loud = severity in PATTERNS;
  for (const [pitch, offset] of PATTERNS[severity] ?? SOFT) {
    const osc = context.createOscillator();
    const gain = context.createGain();
    osc.type = loud ? "square" : "sine";
    osc.frequency.value = pitch;
    gain.gain.setValueAtTime(0.0001, start + offset);
    gain.gain.exponentialRampToValueAtTime(loud ? 0.2 : 0.1, start + offset + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.18);
    osc.connect(gain).connect(context.destination);
    osc.start(start + offset);
    osc.stop(start + offset + 0.2);
  }
}
