function x = norminv(p, mu, sigma)
% Shim: Octave 7 core lacks norminv (statistics package).
x = mu - sigma * sqrt(2) * erfcinv(2 * p);
end
