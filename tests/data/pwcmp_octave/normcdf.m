function p = normcdf(x, mu, sigma)
% Shim: Octave 7 core lacks normcdf (statistics package).
p = 0.5 * erfc(-(x - mu) ./ (sigma * sqrt(2)));
end
